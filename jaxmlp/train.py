"""Pure training functions for ONE member: init, one epoch, evaluation, early stopping.

Everything a sweep may vary is an array argument (the member's hyperparameters ``hp``, its
:class:`Stream`), so the sweep can ``jax.vmap`` these functions over members without changing them. The
model and the optimizer are built from ``hp`` inside the traced program (:class:`Setup` holds the
factories), so a hyperparameter may be a model field, an optimizer argument or a loss argument. Shapes
and program choices live in the hashable :class:`Setup`.

Randomness comes from the member's stream: a key derived from its seed (and fold) only. Epoch ``e``
draws its minibatch order from ``fold_in(key, e + 1)`` folded with 0; step ``i``'s dropout key folds 1,
then ``i``. Members that share a seed therefore share initialisation, order and dropout draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxmlp import models, optim
from jaxmlp.nn import draws_of_step


class MemberState(NamedTuple):
    """Everything of one member that changes while it trains (and what a checkpoint holds)."""

    variables: dict[str, Any]         # params (and batch_stats)
    opt_state: Any
    best_variables: dict[str, Any]    # the best validation epoch's variables (early stopping)
    best_val_loss: jax.Array
    best_epoch: jax.Array
    bad_epochs: jax.Array
    epochs_run: jax.Array
    active: jax.Array                 # False once stopped: the state no longer changes
    diverged_epoch: jax.Array         # 0, or the epoch whose loss or parameters became non-finite


class Stream(NamedTuple):
    """A member's random stream and data: its root key and its training / validation positions."""

    key: jax.Array
    train_idx: jax.Array
    val_idx: jax.Array


@dataclass(frozen=True)
class Setup:
    """The static part of a member's program: shared by every member of a group."""

    model: Callable[[Mapping[str, Any]], nn.Module]     # hp -> module
    optimizer: Any                                       # a built-in name or hp -> optax transformation
    input_shape: tuple[int, ...]
    batch_size: int = 128
    patience: int = 0          # 0: no early stopping; the final epoch's parameters are used for testing
    eval_batch: int = 500
    lr_schedule: str = "constant"  # see jaxmlp.optim.schedule
    total_steps: int = 0           # optimizer steps in the whole run (for the schedule)
    loss: Callable | None = None   # None: cross-entropy; else (logits, labels, hp) -> per-sample loss

    def tx(self, hp: Mapping[str, Any]) -> optax.GradientTransformation:
        return optim.make_optimizer(self.optimizer, hp, self.lr_schedule, self.total_steps)


def member_key(seed: jax.Array, fold: jax.Array | int = 0) -> jax.Array:
    """The root key of a member: a function of its seed and fold alone, never of its place in a sweep."""
    return jax.random.fold_in(jax.random.key(seed), fold)


def to_float(x: jax.Array) -> jax.Array:
    """uint8 images -> float32 in [0, 1]; other inputs as float32 (the formula of jaxmlp.data.preprocess)."""
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / jnp.float32(255.0)
    return x.astype(jnp.float32)


def init(setup: Setup, hp: Mapping[str, Any], key: jax.Array) -> MemberState:
    """A fresh member state: variables, optimizer state and early-stopping bookkeeping."""
    variables = models.init(setup.model(hp), jax.random.fold_in(key, 0), setup.input_shape)
    opt_state = setup.tx(hp).init(variables["params"])
    return MemberState(variables, opt_state, variables, jnp.array(jnp.inf, jnp.float32), jnp.array(0, jnp.int32),
                       jnp.array(0, jnp.int32), jnp.array(0, jnp.int32), jnp.array(True), jnp.array(0, jnp.int32))


def _batch(data: dict[str, jax.Array], idx: jax.Array) -> tuple[jax.Array, jax.Array]:
    return to_float(data["x"][idx]), data["y"][idx]


def steps_per_epoch(n_train: int, batch: int) -> int:
    """Minibatches in an epoch of `n_train` samples: the last partial one counts (see _padded_batches)."""
    return -(-n_train // batch)


def _padded_batches(order: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
    """Reshape positions into (steps, batch) rows; the last partial row is filled with the first
    positions again, weighted 0, so every step has one shape and each sample counts once."""
    n = order.shape[0]
    steps = steps_per_epoch(n, batch)
    pad = steps * batch - n
    order = jnp.concatenate([order, order[:pad]])
    weights = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(pad, jnp.float32)])
    return order.reshape(steps, batch), weights.reshape(steps, batch)


def _weighted_metrics(logits, labels, weights):
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (logits.argmax(-1) == labels).astype(jnp.float32)
    return (ce * weights).sum(), (correct * weights).sum()


def evaluate(setup: Setup, hp: Mapping[str, Any], variables: dict[str, Any], data: dict[str, jax.Array],
             idx: jax.Array) -> dict[str, jax.Array]:
    """Mean cross-entropy and accuracy over ``data[idx]``, in batches of ``setup.eval_batch``."""
    batch = min(setup.eval_batch, idx.shape[0])
    rows, weights = _padded_batches(idx, batch)
    model = setup.model(hp)

    def one(args):
        r, w = args
        x, y = _batch(data, r)
        logits, _ = models.apply(model, variables, x, train=False)
        return _weighted_metrics(logits, y, w)

    loss, correct = jax.lax.map(one, (rows, weights))
    n = jnp.float32(idx.shape[0])
    return {"loss": loss.sum() / n, "accuracy": correct.sum() / n}


def _objective(setup: Setup, hp: Mapping[str, Any], params, logits, y, w) -> jax.Array:
    """The training loss of a minibatch: the (weighted) mean of the per-sample loss, plus the L1 term."""
    if setup.loss is not None:
        per_sample = setup.loss(logits, y, hp)
    elif optim.is_zero(hp["label_smoothing"]):
        per_sample = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    else:
        targets = optax.smooth_labels(jax.nn.one_hot(y, logits.shape[-1]), hp["label_smoothing"])
        per_sample = optax.softmax_cross_entropy(logits, targets)
    loss = (per_sample * w).sum() / w.sum()
    return loss if optim.is_zero(hp["l1"]) else loss + optim.l1_penalty(params, hp["l1"])


def _loss(setup, model, params, stats, hp, x, y, w, key, draws):
    logits, new_stats = models.apply(model, {"params": params, **stats}, x, True, key, draws)
    ce, correct = _weighted_metrics(logits, y, w)
    return _objective(setup, hp, params, logits, y, w), (ce, correct, new_stats)


def _epoch_key(stream: Stream, epoch: jax.Array) -> jax.Array:
    """The key of one epoch of `stream`: it folds in 0 for the shuffle, 1 for the dropout draws."""
    return jax.random.fold_in(stream.key, epoch + 1)


def _dropout_key(stream: Stream, epoch: jax.Array, step: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(_epoch_key(stream, epoch), 1), step)


def epoch_draws(setup: Setup, hp: Mapping[str, Any], stream: Stream, epoch: jax.Array) -> Any:
    """Every dropout draw of an epoch of `stream` (leading axis: steps), the same numbers that
    :func:`train_epoch` makes step by step. Made once, they serve every member of the stream (`hp`: any
    one of them; the draws depend on shapes and keys only, and the model's other work is dead code)."""
    steps = steps_per_epoch(stream.train_idx.shape[0], setup.batch_size)
    model = setup.model(hp)
    variables = models.init(model, stream.key, setup.input_shape)
    x = jnp.zeros((setup.batch_size, *setup.input_shape), jnp.float32)
    return jax.vmap(lambda i: draws_of_step(model, variables, x, _dropout_key(stream, epoch, i)))(jnp.arange(steps))


def train_epoch(setup: Setup, state: MemberState, hp: Mapping[str, Any], stream: Stream,
                data: dict[str, jax.Array], epoch: jax.Array, draws: Any = None) -> tuple[MemberState, dict]:
    """One epoch for one member: shuffled minibatches (``lax.scan``), then validation and early stopping.

    ``data`` holds ``x`` (inputs) and ``y`` (labels); the stream's positions index into it. The last partial
    minibatch is kept: it is padded to full size with samples weighted 0 (they still enter batch-norm
    statistics of that one step). A member whose ``active`` flag is False comes back unchanged. `draws`:
    the epoch's dropout draws from :func:`epoch_draws` (the same numbers as those made step by step
    without it). Returns the new state and this epoch's train/val metrics.
    """
    tx, model = setup.tx(hp), setup.model(hp)
    n = stream.train_idx.shape[0]
    perm = jax.random.permutation(jax.random.fold_in(_epoch_key(stream, epoch), 0), n)
    rows, weights = _padded_batches(perm, setup.batch_size)
    grad_fn = jax.value_and_grad(_loss, argnums=2, has_aux=True)

    def step(carry, inp):
        variables, opt_state, loss_sum, correct_sum = carry
        pos, w, i, step_draws = inp
        # The key goes in even with draws made ahead: jaxmlp's Dropout then uses those, and any other
        # module of a user's model that draws from the "dropout" stream gets the same numbers as without.
        key = _dropout_key(stream, epoch, i)
        x, y = _batch(data, stream.train_idx[pos])
        stats = {k: v for k, v in variables.items() if k != "params"}
        (_, (ce, correct, new_stats)), grads = grad_fn(
            setup, model, variables["params"], stats, hp, x, y, w, key, step_draws)
        updates, opt_state = tx.update(grads, opt_state, variables["params"])
        params = optax.apply_updates(variables["params"], updates)
        variables = {"params": params, **({"batch_stats": new_stats} if new_stats else {})}
        return (variables, opt_state, loss_sum + ce, correct_sum + correct), None

    zero = jnp.float32(0.0)
    init_carry = (state.variables, state.opt_state, zero, zero)
    (variables, opt_state, loss_sum, correct_sum), _ = jax.lax.scan(
        step, init_carry, (rows, weights, jnp.arange(rows.shape[0]), draws))
    val = evaluate(setup, hp, variables, data, stream.val_idx)
    metrics = {"train_loss": loss_sum / n, "train_accuracy": correct_sum / n,
               "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
    return _end_of_epoch(setup, state, variables, opt_state, val["loss"], loss_sum), metrics


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.array([jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)]))


def _end_of_epoch(setup: Setup, state: MemberState, variables, opt_state, val_loss, train_loss) -> MemberState:
    """The state after an epoch: early stopping's bookkeeping, then two masks. A member whose training or
    validation loss or parameters became non-finite keeps its last finite state and stops, marked
    diverged at this epoch; an inactive member keeps its old state entirely."""
    improved = val_loss < state.best_val_loss
    epochs_run = state.epochs_run + 1
    bad = jnp.where(improved, 0, state.bad_epochs + 1)
    still = bad < setup.patience if setup.patience > 0 else jnp.array(True)
    new = MemberState(
        variables, opt_state,
        jax.tree.map(lambda a, b: jnp.where(improved, a, b), variables, state.best_variables),
        jnp.where(improved, val_loss, state.best_val_loss), jnp.where(improved, epochs_run, state.best_epoch),
        bad, epochs_run, still, state.diverged_epoch)
    finite = jnp.isfinite(val_loss) & jnp.isfinite(train_loss) & _all_finite(variables["params"])
    diverged = state._replace(active=jnp.array(False), diverged_epoch=epochs_run)
    after = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, diverged)
    return jax.tree.map(lambda a, b: jnp.where(state.active, a, b), after, state)


def final_variables(setup: Setup, state: MemberState) -> dict[str, Any]:
    """The variables used for test numbers: the best epoch's with early stopping, else the last."""
    return state.best_variables if setup.patience > 0 else state.variables
