"""One member's training functions on tiny synthetic arrays, checked against hand computations."""

from __future__ import annotations

import dataclasses
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import make_images
from jaxmlp import models, train
from test_hparams import table_hp

SHAPE = (28, 28, 1)


def hparams(lr: float = 0.1, dropout: float = 0.0, l1: float = 0.0, l2: float = 0.0, **more) -> dict:
    """Every table default as a float32 array (nothing left out), with these values."""
    return table_hp(lr=lr, dropout=dropout, l1=l1, l2=l2, **more)


@cache
def mlp_setup(hidden=(), optimizer="sgd", **kwargs) -> train.Setup:
    """The built-in MLP's setup; one object per arguments, so that tests share compiled epochs."""
    model = partial(models.build, "mlp", models.Spec(tuple(hidden), "relu", False, 10))
    return train.Setup(model, optimizer, SHAPE, **kwargs)


def stream_for(n_train: int, n_val: int, seed: int = 0) -> train.Stream:
    return train.Stream(train.member_key(seed), jnp.arange(n_train, dtype=jnp.int32),
                        jnp.arange(n_train, n_train + n_val, dtype=jnp.int32))


@cache
def epoch_fn(setup: train.Setup):
    return jax.jit(partial(train.train_epoch, setup))


def tree_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def host(tree):
    """A numpy copy of a tree, so that states of different epochs can be compared afterwards."""
    return jax.tree.map(lambda a: np.array(a), tree)


def linear_ce(params, x, y, smoothing=0.0):
    """Mean cross-entropy of a linear classifier on flattened [0, 1] images, written out by hand (with
    label smoothing: targets (1 - α)·onehot + α/K)."""
    logits = x.reshape(len(x), -1) @ params["Dense_0"]["kernel"].T + params["Dense_0"]["bias"]
    targets = (1 - smoothing) * jax.nn.one_hot(y, 10) + smoothing / 10
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits), axis=1))


# ---- minibatches -------------------------------------------------------------------------------------

def test_padded_batches_count_every_sample_once():
    order = jnp.array([7, 3, 9, 0, 1, 8, 2, 6, 4, 5])
    rows, weights = train._padded_batches(order, 4)
    assert rows.shape == weights.shape == (3, 4)
    totals = np.zeros(10)
    np.add.at(totals, np.asarray(rows).ravel(), np.asarray(weights).ravel())
    np.testing.assert_array_equal(totals, np.ones(10))          # each sample weighs 1 per epoch
    np.testing.assert_array_equal(np.asarray(weights)[-1], [1, 1, 0, 0])
    assert train.steps_per_epoch(10, 4) == 3 and train.steps_per_epoch(8, 4) == 2


def test_inputs_uint8_are_scaled_and_floats_kept():
    # Within one float32 rounding of x / 255 (XLA multiplies by the reciprocal: off by 1 ulp at times).
    np.testing.assert_allclose(train.to_float(jnp.array([0, 51, 255], jnp.uint8)), [0.0, 0.2, 1.0], rtol=1.2e-7)
    floats = jnp.array([-3.5, 300.0], jnp.float32)
    assert np.array_equal(train.to_float(floats), floats)


def test_last_partial_batch_takes_a_step():
    """n=10 identical samples, batch 4: an epoch is ceil(10/4) = 3 SGD steps on that sample, not 2."""
    img, label = make_images(1, seed=3)
    data = {"x": jnp.asarray(np.repeat(img[..., None], 12, axis=0)), "y": jnp.full((12,), int(label[0]), jnp.int32)}
    setup = mlp_setup(batch_size=4)
    hp = hparams(lr=0.01)   # small: each step still has a gradient to follow (lr 0.5 fits in one step)
    state = train.init(setup, hp, train.member_key(0))
    params0 = host(state.variables["params"])
    new, metrics = epoch_fn(setup)(state, hp, stream_for(10, 2), data, jnp.int32(0))

    x = train.to_float(data["x"][:1])
    y = data["y"][:1]
    expected = [params0]
    for _ in range(3):
        g = jax.grad(linear_ce)(expected[-1], x, y)
        expected.append(jax.tree.map(lambda p, d: p - 0.01 * d, expected[-1], g))
    got = new.variables["params"]
    assert_trees_close(got, expected[3], rtol=1e-5, atol=1e-6)
    # Two steps (the partial batch dropped) would be far from it: the third step moves the bias by ~1e-3.
    step3 = np.abs(expected[3]["Dense_0"]["bias"] - expected[2]["Dense_0"]["bias"]).max()
    assert step3 > 1e-4
    assert np.abs(got["Dense_0"]["bias"] - expected[2]["Dense_0"]["bias"]).max() > 0.5 * step3
    # The train loss is the mean of the three steps' losses (each step sees only this one sample).
    step_losses = [float(linear_ce(p, x, y)) for p in expected[:3]]
    np.testing.assert_allclose(float(metrics["train_loss"]), (4 * step_losses[0] + 4 * step_losses[1]
                                                             + 2 * step_losses[2]) / 10, rtol=1e-5)


# ---- the loss: label smoothing, L1, L2, a user's loss -------------------------------------------------

@pytest.fixture(scope="module")
def one_batch():
    """8 samples in ONE minibatch of a linear model: an epoch is one SGD step from the initial params."""
    images, labels = make_images(10, seed=4)
    data = {"x": jnp.asarray(images[..., None]), "y": jnp.asarray(labels, jnp.int32)}
    stream = stream_for(8, 2)
    x, y = train.to_float(data["x"][:8]), data["y"][:8]
    return data, stream, x, y


def _one_step(setup, hp, one_batch):
    data, stream, _, _ = one_batch
    state = train.init(setup, hp, stream.key)
    new, metrics = epoch_fn(setup)(state, hp, stream, data, jnp.int32(0))
    return host(state.variables["params"]), host(new.variables["params"]), metrics


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_label_smoothing_steps_on_the_smoothed_cross_entropy(smoothing, one_batch):
    """The step follows the gradient of the cross-entropy against (1 - α)·onehot + α/K (optax's
    smooth_labels); the reported train loss stays the plain cross-entropy."""
    _, _, x, y = one_batch
    lr = 0.5
    params0, params1, metrics = _one_step(mlp_setup(batch_size=8), hparams(lr=lr, label_smoothing=smoothing),
                                          one_batch)
    g = jax.grad(linear_ce)(params0, x, y, smoothing)
    assert_trees_close(params1, jax.tree.map(lambda p, d: p - lr * d, params0, g), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics["train_loss"]), float(linear_ce(params0, x, y)), rtol=1e-5)

    # The objective itself, against optax's own functions.
    setup, hp = mlp_setup(), hparams(label_smoothing=smoothing)
    logits = jax.random.normal(jax.random.key(0), (8, 10))
    w = jnp.array([1, 1, 1, 1, 1, 0.0, 1, 0.0])
    expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(y, 10), smoothing))
    np.testing.assert_allclose(float(train._objective(setup, hp, params0, logits, y, w)),
                               float((expected * w).sum() / 6), rtol=1e-6)


def test_l1_and_l2_step_on_weight_matrices_only(one_batch):
    """One SGD step with λ₁ and λ₂: kernel -= lr·(g + λ₁·sign(w) + 2λ₂·w); the bias -= lr·g."""
    _, _, x, y = one_batch
    lr, l1, l2 = 0.5, 0.01, 0.05
    params0, params1, metrics = _one_step(mlp_setup(batch_size=8), hparams(lr=lr, l1=l1, l2=l2), one_batch)
    g = jax.grad(linear_ce)(params0, x, y)["Dense_0"]
    w = params0["Dense_0"]["kernel"]
    np.testing.assert_allclose(params1["Dense_0"]["kernel"], w - lr * (g["kernel"] + l1 * np.sign(w) + 2 * l2 * w),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(params1["Dense_0"]["bias"], params0["Dense_0"]["bias"] - lr * g["bias"],
                               rtol=1e-5, atol=1e-6)
    # The reported loss is the data loss alone.
    np.testing.assert_allclose(float(metrics["train_loss"]), float(linear_ce(params0, x, y)), rtol=1e-5)
    # The L1 term of the objective: λ₁·Σ|w| on the kernel.
    logits = jax.random.normal(jax.random.key(0), (8, 10))
    objective = lambda l1: float(train._objective(mlp_setup(), hparams(l1=l1), params0, logits, y, jnp.ones(8)))
    np.testing.assert_allclose(objective(l1) - objective(0.0), l1 * np.abs(w).sum(), rtol=1e-4)


def test_a_users_loss_replaces_the_cross_entropy(one_batch):
    """Setup(loss=...) gives the per-sample loss: twice the cross-entropy steps as lr doubled."""
    twice = lambda logits, y, hp: 2.0 * optax.softmax_cross_entropy_with_integer_labels(logits, y)
    _, doubled, _ = _one_step(mlp_setup(batch_size=8, loss=twice), hparams(lr=0.25), one_batch)
    _, plain, _ = _one_step(mlp_setup(batch_size=8), hparams(lr=0.5), one_batch)
    assert_trees_close(doubled, plain, rtol=1e-6, atol=1e-7)


# ---- a tiny MLP --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    """14 samples (10 train, 4 validation) of the learnable synthetic problem, and a small MLP."""
    images, labels = make_images(14, seed=5)
    data = {"x": jnp.asarray(images[..., None]), "y": jnp.asarray(labels, jnp.int32)}
    setup = mlp_setup((6,), batch_size=4, eval_batch=3)
    return setup, data, stream_for(10, 4)


def test_train_loss_is_the_mean_over_all_samples(tiny):
    """With lr = 0 the parameters never move: the epoch's train metrics are the plain means over n=10."""
    setup, data, stream = tiny
    hp = hparams(lr=0.0)
    state = train.init(setup, hp, stream.key)
    before = host(state.variables)
    new, metrics = epoch_fn(setup)(state, hp, stream, data, jnp.int32(0))
    assert tree_equal(new.variables, before)
    full = train.evaluate(setup, hp, before, data, stream.train_idx)
    np.testing.assert_allclose(metrics["train_loss"], full["loss"], rtol=1e-6)
    np.testing.assert_allclose(metrics["train_accuracy"], full["accuracy"], rtol=1e-6)
    val = train.evaluate(setup, hp, before, data, stream.val_idx)
    np.testing.assert_allclose(metrics["val_loss"], val["loss"], rtol=1e-6)


def test_python_zeros_give_the_numbers_of_array_zeros(tiny):
    """A term that is 0 for every member is left out of the program (a Python 0.0), with the numbers
    of the same term kept at an array 0."""
    setup, data, stream = tiny
    kept = hparams(lr=0.3)
    skipped = {**kept, **{n: 0.0 for n in ("dropout", "l1", "l2", "momentum", "label_smoothing")}}
    state = train.init(setup, kept, stream.key)
    a = epoch_fn(setup)(state, kept, stream, data, jnp.int32(0))
    b = epoch_fn(setup)(state, skipped, stream, data, jnp.int32(0))
    assert_trees_close(host(a), host(b), rtol=1e-5, atol=1e-6)
    assert not tree_equal(host(a[0].variables), host(state.variables))


def test_vmapped_members_train_as_each_alone(tiny):
    """Three members (lr, dropout) on one stream under jit(vmap) train as each does alone."""
    setup, data, stream = tiny
    hps = [hparams(lr=0.5), hparams(lr=0.2, dropout=0.3), hparams(lr=0.2, dropout=0.6)]
    stacked = jax.tree.map(lambda *v: jnp.stack(v), *hps)
    states = jax.vmap(lambda h: train.init(setup, h, stream.key))(stacked)
    step = jax.jit(jax.vmap(partial(train.train_epoch, setup), in_axes=(0, 0, None, None, None)))
    together = host(step(states, stacked, stream, data, jnp.int32(1)))
    fn = epoch_fn(setup)
    for k, hp in enumerate(hps):
        alone = fn(train.init(setup, hp, stream.key), hp, stream, data, jnp.int32(1))
        assert_trees_close(jax.tree.map(lambda a: a[k], together), host(alone), rtol=1e-5, atol=1e-6)


def test_inactive_member_comes_back_bit_identical(tiny):
    """Two members under jit(vmap), one already stopped: it is untouched, the other one trains."""
    setup, data, stream = tiny
    hp = jax.tree.map(lambda v: jnp.stack([v, v]), hparams(lr=0.5))
    states = jax.vmap(lambda h: train.init(setup, h, stream.key))(hp)
    states = states._replace(active=jnp.array([True, False]))
    before = host(states)
    step = jax.jit(jax.vmap(partial(train.train_epoch, setup), in_axes=(0, 0, None, None, None)))
    after, _ = step(states, hp, stream, data, jnp.int32(0))
    after = host(after)
    assert tree_equal(jax.tree.map(lambda a: a[1], after), jax.tree.map(lambda a: a[1], before))
    assert not tree_equal(jax.tree.map(lambda a: a[0], after.variables),
                          jax.tree.map(lambda a: a[0], before.variables))
    assert int(after.epochs_run[0]) == 1 and int(after.epochs_run[1]) == 0


def test_epoch_with_draws_made_ahead_equals_draws_made_per_step(tiny):
    """train_epoch given epoch_draws' draws trains bit for bit as it does making them step by step; the
    draws depend on the stream only, not on the member's rate."""
    setup, data, stream = tiny
    hp = hparams(lr=0.1, dropout=0.4)
    state = train.init(setup, hp, stream.key)
    epoch = jnp.int32(2)
    draws_for = jax.jit(partial(train.epoch_draws, setup))
    draws = draws_for(hp, stream, epoch)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), draws) == {"Dropout_0": {"draws": ((3, 4, 6), jnp.uint16)}}
    assert tree_equal(draws, draws_for(hparams(dropout=0.9), stream, epoch))
    assert not tree_equal(draws, draws_for(hp, stream, jnp.int32(3)))
    fn = epoch_fn(setup)
    ahead = fn(state, hp, stream, data, epoch, draws)
    per_step = fn(state, hp, stream, data, epoch)
    assert tree_equal(host(ahead), host(per_step))
    # The draws matter: other draws give other parameters.
    other = fn(state, hp, stream, data, epoch, jax.tree.map(lambda a: a[::-1], draws))
    assert not tree_equal(host(other[0].variables), host(per_step[0].variables))


def test_no_dropout_makes_no_draws(tiny):
    setup, _, stream = tiny
    assert train.epoch_draws(setup, {**hparams(), "dropout": 0.0}, stream, jnp.int32(0)) == {}


# ---- early stopping ----------------------------------------------------------------------------------

def test_early_stopping_mask_on_a_given_sequence_of_val_losses():
    """Patience 2 on val losses 3, 2, 2.5, 1.9, 2.0, 2.1 | 2.2, 1.0: best epoch 4, stops after epoch 6,
    and nothing changes afterwards (even when a later loss would have been a new best)."""
    setup = mlp_setup(patience=2)
    state = fresh_state()
    step = jax.jit(partial(train._end_of_epoch, setup))
    seen = []
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 1.9, 2.0, 2.1, 2.2, 1.0], start=1):
        state = step(state, params(epoch), jnp.float32(epoch), jnp.float32(loss), jnp.float32(1.0))
        seen.append((int(state.epochs_run), int(state.best_epoch), bool(state.active)))
    assert seen == [(1, 1, True), (2, 2, True), (3, 2, True), (4, 4, True), (5, 4, True), (6, 4, False),
                    (6, 4, False), (6, 4, False)]
    assert float(state.best_variables["params"]["w"]) == 4.0      # the best epoch's parameters
    assert float(state.variables["params"]["w"]) == 6.0           # the last epoch it trained
    assert float(state.opt_state) == 6.0
    assert float(state.best_val_loss) == pytest.approx(1.9)
    assert int(state.diverged_epoch) == 0
    assert train.final_variables(setup, state)["params"]["w"] == 4.0
    assert train.final_variables(dataclasses.replace(setup, patience=0), state)["params"]["w"] == 6.0


def fresh_state() -> train.MemberState:
    zero = params(0)
    return train.MemberState(zero, jnp.float32(0), zero, jnp.float32(jnp.inf), jnp.int32(0), jnp.int32(0),
                             jnp.int32(0), jnp.array(True), jnp.int32(0))


def params(value: float) -> dict:
    return {"params": {"w": jnp.float32(value)}}


@pytest.mark.parametrize("bad", ["val_loss", "train_loss", "params"])
def test_a_non_finite_epoch_marks_the_member_diverged_and_keeps_its_last_finite_state(bad):
    """Epochs 1-2 finite, epoch 3 non-finite in one of three ways: the member stops, diverged at epoch 3,
    with epoch 2's state; later epochs change nothing."""
    step = jax.jit(partial(train._end_of_epoch, mlp_setup(patience=0)))
    state = fresh_state()
    for epoch in range(1, 6):
        nan = epoch == 3
        state = step(state, params(jnp.nan if nan and bad == "params" else epoch), jnp.float32(epoch),
                     jnp.float32(jnp.nan if nan and bad == "val_loss" else 1.0 / epoch),
                     jnp.float32(jnp.inf if nan and bad == "train_loss" else 1.0))
    assert int(state.diverged_epoch) == 3 and not bool(state.active)
    assert int(state.epochs_run) == 2 and float(state.variables["params"]["w"]) == 2.0
    assert float(state.opt_state) == 2.0


def test_early_stopping_in_train_epoch():
    """Validation = training images with labels shifted by one class: learning the training labels makes
    the val loss worse every epoch, so with patience P the member stops after epoch 1 + P, keeping epoch
    1's parameters as its best."""
    images, labels = make_images(40, seed=2)
    x = np.concatenate([images, images[:20]])
    y = np.concatenate([labels, (labels[:20] + 1) % 10]).astype(np.int32)
    data = {"x": jnp.asarray(x[..., None]), "y": jnp.asarray(y)}
    stream = stream_for(40, 20)
    patience = 2
    setup = mlp_setup((8,), "adam", batch_size=8, patience=patience)
    hp = hparams(lr=0.02)
    state = train.init(setup, hp, stream.key)
    fn = epoch_fn(setup)
    snapshots, val_losses = [], []
    for epoch in range(6):
        state, metrics = fn(state, hp, stream, data, jnp.int32(epoch))
        snapshots.append(host(state))
        val_losses.append(float(metrics["val_loss"]))
    assert val_losses[1] > val_losses[0] and val_losses[2] > val_losses[0], val_losses  # the premise
    stop = 1 + patience
    assert [bool(s.active) for s in snapshots] == [True] * (stop - 1) + [False] * (6 - stop + 1)
    last = snapshots[stop - 1]
    assert int(last.epochs_run) == stop and int(last.best_epoch) == 1
    assert tree_equal(last.best_variables, snapshots[0].variables)
    for later in snapshots[stop:]:
        assert tree_equal(later, last)
    assert tree_equal(train.final_variables(setup, last), snapshots[0].variables)


# ---- evaluation --------------------------------------------------------------------------------------

def test_evaluate_matches_a_hand_computation():
    """A linear classifier with chosen weights, 7 of 12 samples in batches of 3 (the last one padded);
    uint8 images are scaled by 1/255, float inputs taken as they are."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 28, 28, 1)).astype(np.uint8)
    labels = rng.integers(0, 10, size=12).astype(np.int32)
    kernel = rng.normal(0, 0.05, size=(784, 10)).astype(np.float32)
    bias = rng.normal(0, 0.5, size=10).astype(np.float32)
    setup = mlp_setup(eval_batch=3)
    variables = {"params": {"Dense_0": {"kernel": jnp.asarray(kernel.T), "bias": jnp.asarray(bias)}}}   # (out, in)
    idx = np.array([11, 0, 5, 3, 8, 2, 9])
    x = images[idx].reshape(len(idx), -1).astype(np.float64) / 255.0
    logits = x @ kernel.astype(np.float64) + bias
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    loss = -logp[np.arange(len(idx)), labels[idx]].mean()
    accuracy = (logits.argmax(1) == labels[idx]).mean()
    for inputs in (images, (images / 255.0).astype(np.float32)):
        got = train.evaluate(setup, hparams(), variables, {"x": jnp.asarray(inputs), "y": jnp.asarray(labels)},
                             jnp.asarray(idx, jnp.int32))
        np.testing.assert_allclose(float(got["loss"]), loss, rtol=1e-5)
        assert float(got["accuracy"]) == pytest.approx(accuracy, abs=1e-7)
