"""Pure training functions for ONE member: init, one epoch, evaluation, early stopping.

Everything a sweep may vary is an array argument (the hyperparameters in ``hp`` and the optimizer state,
the random key in ``stream``), so :mod:`jaxmlp.sweep` can ``jax.vmap`` these functions over members
without changing them. Shapes and program choices (model, optimizer kind, batch size, patience) live in
the hashable :class:`Setup`.

Randomness comes from the member's *stream*: a key derived from its seed (and fold) only. Epoch ``e``
draws its minibatch order from ``fold_in(key, e)``; step ``i`` of it draws dropout from a key folded from
that. Members that share a seed therefore share initialisation, order and dropout draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxmlp import models, optim

State = dict[str, Any]
# Keys of the per-member hyperparameters (scalars); lr and l2 also live in the optimizer state.
HPARAMS = ("dropout", "l1", "l2", "lr")
INPUT_SHAPE = (28, 28, 1)


@dataclass(frozen=True)
class Setup:
    """The static part of a member's program: shared by every member of a group."""

    model: nn.Module
    optimizer: str = "adam"
    batch_size: int = 128
    patience: int = 0          # 0: no early stopping; the final epoch's parameters are used for testing
    eval_batch: int = 500
    lr_schedule: str = "constant"  # see jaxmlp.optim.schedule
    total_steps: int = 0           # optimizer steps in the whole run (for the schedule)
    # False when every member's λ is 0: the term is then left out of the program. The numbers are the
    # same (it would add exact zeros); the passes over the parameters it costs are saved.
    use_l1: bool = True
    use_l2: bool = True
    use_dropout: bool = True       # False when every member's rate is 0: no draws are made

    @property
    def tx(self) -> optax.GradientTransformation:
        return optim.make_optimizer(self.optimizer, lr_schedule=self.lr_schedule, total_steps=self.total_steps,
                                    use_l2=self.use_l2)


def member_key(seed: jax.Array, fold: jax.Array | int = 0) -> jax.Array:
    """The root key of a member: a function of its seed and fold alone, never of its place in a sweep."""
    return jax.random.fold_in(jax.random.key(seed), fold)


def to_float(images: jax.Array) -> jax.Array:
    """uint8 images -> float32 in [0, 1] (the same formula as :func:`jaxmlp.data.preprocess`)."""
    return images.astype(jnp.float32) / jnp.float32(255.0)


def init(setup: Setup, hp: dict[str, jax.Array], key: jax.Array) -> State:
    """A fresh member state: variables, optimizer state and early-stopping bookkeeping."""
    variables = models.init(setup.model, jax.random.fold_in(key, 0), INPUT_SHAPE)
    opt_state = optim.make_optimizer(setup.optimizer, hp["lr"], hp["l2"], setup.lr_schedule,
                                     setup.total_steps, setup.use_l2).init(variables["params"])
    return {
        "variables": variables,
        "opt_state": opt_state,
        "best_variables": variables,
        "best_val_loss": jnp.array(jnp.inf, jnp.float32),
        "best_epoch": jnp.array(0, jnp.int32),
        "bad_epochs": jnp.array(0, jnp.int32),
        "epochs_run": jnp.array(0, jnp.int32),
        "active": jnp.array(True),
    }


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


def evaluate(setup: Setup, variables: dict[str, Any], data: dict[str, jax.Array],
             idx: jax.Array) -> dict[str, jax.Array]:
    """Mean cross-entropy and accuracy over ``data[idx]``, in batches of ``setup.eval_batch``."""
    batch = min(setup.eval_batch, idx.shape[0])
    rows, weights = _padded_batches(idx, batch)

    def one(args):
        r, w = args
        x, y = _batch(data, r)
        logits, _ = models.apply(setup.model, variables, x, jnp.float32(0.0), None, train=False)
        return _weighted_metrics(logits, y, w)

    loss, correct = jax.lax.map(one, (rows, weights))
    n = jnp.float32(idx.shape[0])
    return {"loss": loss.sum() / n, "accuracy": correct.sum() / n}


def _loss(setup, params, stats, hp, x, y, w, noise):
    logits, new_stats = models.apply(setup.model, {"params": params, **stats}, x, hp["dropout"], noise, True)
    ce, correct = _weighted_metrics(logits, y, w)
    total = w.sum()
    loss = ce / total + (optim.l1_penalty(params, hp["l1"]) if setup.use_l1 else 0.0)
    return loss, (ce, correct, new_stats)


def _epoch_key(stream: dict[str, jax.Array], epoch: jax.Array) -> jax.Array:
    """The key of one epoch of `stream`: it folds in 0 for the shuffle, 1 for the dropout draws."""
    return jax.random.fold_in(stream["key"], epoch + 1)


def _dropout_key(stream: dict[str, jax.Array], epoch: jax.Array) -> jax.Array:
    """The key of an epoch's dropout draws; step i folds in i."""
    return jax.random.fold_in(_epoch_key(stream, epoch), 1)


def epoch_noise(setup: Setup, stream: dict[str, jax.Array], epoch: jax.Array) -> tuple[jax.Array, ...]:
    """Every dropout draw of an epoch of `stream` (leading axis: steps), the same numbers that
    :func:`train_epoch` makes step by step. Made once, they serve every member of the stream."""
    steps = steps_per_epoch(stream["train_idx"].shape[0], setup.batch_size)
    dkey = _dropout_key(stream, epoch)
    return jax.vmap(lambda i: models.noise_draws(setup.model, jax.random.fold_in(dkey, i), setup.batch_size))(
        jnp.arange(steps))


def epoch_noise_bytes(setup: Setup, n_train: int) -> int:
    """The size of :func:`epoch_noise` for one stream."""
    per_step = sum(math.prod(shape) for _, shape in setup.model.dropout_sites(setup.batch_size))
    return 2 * steps_per_epoch(n_train, setup.batch_size) * per_step   # uint16 draws


def train_epoch(setup: Setup, state: State, hp: dict[str, jax.Array], stream: dict[str, jax.Array],
                data: dict[str, jax.Array], epoch: jax.Array,
                noise: tuple[jax.Array, ...] | None = None) -> tuple[State, dict[str, jax.Array]]:
    """One epoch for one member: shuffled minibatches (``lax.scan``), then validation and early stopping.

    ``stream`` holds the member's ``key`` and its ``train_idx`` / ``val_idx`` into ``data`` (``x``: uint8
    images, ``y``: labels). The last partial minibatch is kept: it is padded to full size with samples
    weighted 0 (they still enter batch-norm statistics of that one step). A member whose ``active`` flag
    is False comes back unchanged. `noise`: the epoch's dropout draws from :func:`epoch_noise` (the same
    numbers as those made step by step without it). Returns the new state and this epoch's train/val
    metrics.
    """
    tx = setup.tx
    n = stream["train_idx"].shape[0]
    perm = jax.random.permutation(jax.random.fold_in(_epoch_key(stream, epoch), 0), n)
    rows, weights = _padded_batches(perm, setup.batch_size)
    dkey = _dropout_key(stream, epoch)
    grad_fn = jax.value_and_grad(_loss, argnums=1, has_aux=True)

    def step(carry, inp):
        variables, opt_state, loss_sum, correct_sum = carry
        pos, w, i, step_noise = inp
        if not setup.use_dropout:
            step_noise = None
        elif step_noise is None:
            step_noise = jax.random.fold_in(dkey, i)
        x, y = _batch(data, stream["train_idx"][pos])
        stats = {k: v for k, v in variables.items() if k != "params"}
        (_, (ce, correct, new_stats)), grads = grad_fn(
            setup, variables["params"], stats, hp, x, y, w, step_noise)
        updates, opt_state = tx.update(grads, opt_state, variables["params"])
        params = optax.apply_updates(variables["params"], updates)
        variables = {"params": params, **({"batch_stats": new_stats} if new_stats else {})}
        return (variables, opt_state, loss_sum + ce, correct_sum + correct), None

    zero = jnp.float32(0.0)
    init_carry = (state["variables"], state["opt_state"], zero, zero)
    (variables, opt_state, loss_sum, correct_sum), _ = jax.lax.scan(
        step, init_carry, (rows, weights, jnp.arange(rows.shape[0]), noise))
    val = evaluate(setup, variables, data, stream["val_idx"])
    metrics = {"train_loss": loss_sum / n, "train_accuracy": correct_sum / n,
               "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
    return _early_stopping(setup, state, variables, opt_state, val["loss"]), metrics


def _early_stopping(setup: Setup, state: State, variables, opt_state, val_loss) -> State:
    """The state after an epoch, masked: inactive members keep their old state entirely."""
    improved = val_loss < state["best_val_loss"]
    epochs_run = state["epochs_run"] + 1
    bad = jnp.where(improved, 0, state["bad_epochs"] + 1)
    still = bad < setup.patience if setup.patience > 0 else jnp.array(True)
    new = {
        "variables": variables,
        "opt_state": opt_state,
        "best_variables": jax.tree.map(lambda a, b: jnp.where(improved, a, b), variables,
                                       state["best_variables"]),
        "best_val_loss": jnp.where(improved, val_loss, state["best_val_loss"]),
        "best_epoch": jnp.where(improved, epochs_run, state["best_epoch"]),
        "bad_epochs": bad,
        "epochs_run": epochs_run,
        "active": still,
    }
    return jax.tree.map(lambda a, b: jnp.where(state["active"], a, b), new, state)


def final_variables(setup: Setup, state: State) -> dict[str, Any]:
    """The variables used for test numbers: the best epoch's with early stopping, else the last."""
    return state["best_variables"] if setup.patience > 0 else state["variables"]
