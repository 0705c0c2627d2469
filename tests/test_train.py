"""One member's training functions on tiny synthetic arrays, checked against hand computations."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_images
from jaxmlp import models, train


def hparams(lr: float = 0.1, dropout: float = 0.0, l1: float = 0.0, l2: float = 0.0) -> dict:
    return {k: jnp.float32(v) for k, v in dict(dropout=dropout, l1=l1, l2=l2, lr=lr).items()}


def stream_for(n_train: int, n_val: int, seed: int = 0) -> dict:
    return {"key": train.member_key(seed), "train_idx": jnp.arange(n_train, dtype=jnp.int32),
            "val_idx": jnp.arange(n_train, n_train + n_val, dtype=jnp.int32)}


def epoch_fn(setup: train.Setup):
    return jax.jit(partial(train.train_epoch, setup))


def tree_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def host(tree):
    """A numpy copy of a tree, so that states of different epochs can be compared afterwards."""
    return jax.tree.map(lambda a: np.array(a), tree)


def linear_ce(params, x, y):
    """Mean cross-entropy of a linear classifier on flattened [0, 1] images, written out by hand."""
    logits = x.reshape(len(x), -1) @ params["Dense_0"]["kernel"].T + params["Dense_0"]["bias"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


# ---- minibatches -------------------------------------------------------------------------------------

def test_padded_batches_count_every_sample_once():
    order = jnp.array([7, 3, 9, 0, 1, 8, 2, 6, 4, 5])
    rows, weights = train._padded_batches(order, 4)
    assert rows.shape == weights.shape == (3, 4)
    totals = np.zeros(10)
    np.add.at(totals, np.asarray(rows).ravel(), np.asarray(weights).ravel())
    np.testing.assert_array_equal(totals, np.ones(10))          # each sample weighs 1 per epoch
    np.testing.assert_array_equal(np.asarray(weights)[-1], [1, 1, 0, 0])


def test_last_partial_batch_takes_a_step():
    """n=10 identical samples, batch 4: an epoch is ceil(10/4) = 3 SGD steps on that sample, not 2."""
    img, label = make_images(1, seed=3)
    data = {"x": jnp.asarray(np.repeat(img[..., None], 12, axis=0)), "y": jnp.full((12,), int(label[0]), jnp.int32)}
    setup = train.Setup(models.make_model("mlp", ()), optimizer="sgd", batch_size=4)
    hp = hparams(lr=0.01)   # small: each step still has a gradient to follow (lr 0.5 fits in one step)
    state = train.init(setup, hp, train.member_key(0))
    params0 = host(state["variables"]["params"])
    new, metrics = epoch_fn(setup)(state, hp, stream_for(10, 2), data, jnp.int32(0))

    x = train.to_float(data["x"][:1])
    y = data["y"][:1]
    expected = [params0]
    for _ in range(3):
        g = jax.grad(linear_ce)(expected[-1], x, y)
        expected.append(jax.tree.map(lambda p, d: p - 0.01 * d, expected[-1], g))
    got = new["variables"]["params"]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected[3])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Two steps (the partial batch dropped) would be far from it: the third step moves the bias by ~1e-3.
    step3 = np.abs(expected[3]["Dense_0"]["bias"] - expected[2]["Dense_0"]["bias"]).max()
    assert step3 > 1e-4
    assert np.abs(got["Dense_0"]["bias"] - expected[2]["Dense_0"]["bias"]).max() > 0.5 * step3
    # The train loss is the mean of the three steps' losses (each step sees only this one sample).
    step_losses = [float(linear_ce(p, x, y)) for p in expected[:3]]
    np.testing.assert_allclose(float(metrics["train_loss"]), (4 * step_losses[0] + 4 * step_losses[1]
                                                             + 2 * step_losses[2]) / 10, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny():
    """14 samples (10 train, 4 validation) of the learnable synthetic problem, and a small MLP."""
    images, labels = make_images(14, seed=5)
    data = {"x": jnp.asarray(images[..., None]), "y": jnp.asarray(labels, jnp.int32)}
    setup = train.Setup(models.make_model("mlp", (6,)), optimizer="sgd", batch_size=4, eval_batch=3)
    return setup, data, stream_for(10, 4)


def test_train_loss_is_the_mean_over_all_samples(tiny):
    """With lr = 0 the parameters never move: the epoch's train metrics are the plain means over n=10."""
    setup, data, stream = tiny
    hp = hparams(lr=0.0)
    state = train.init(setup, hp, stream["key"])
    before = host(state["variables"])
    new, metrics = epoch_fn(setup)(state, hp, stream, data, jnp.int32(0))
    assert tree_equal(new["variables"], before)
    full = train.evaluate(setup, before, data, stream["train_idx"])
    np.testing.assert_allclose(metrics["train_loss"], full["loss"], rtol=1e-6)
    np.testing.assert_allclose(metrics["train_accuracy"], full["accuracy"], rtol=1e-6)
    val = train.evaluate(setup, before, data, stream["val_idx"])
    np.testing.assert_allclose(metrics["val_loss"], val["loss"], rtol=1e-6)


def test_inactive_member_comes_back_bit_identical(tiny):
    """Two members under jit(vmap), one already stopped: it is untouched, the other one trains."""
    setup, data, stream = tiny
    hp = jax.tree.map(lambda v: jnp.stack([v, v]), hparams(lr=0.5))
    states = jax.vmap(lambda h: train.init(setup, h, stream["key"]))(hp)
    states["active"] = jnp.array([True, False])
    before = host(states)
    step = jax.jit(jax.vmap(partial(train.train_epoch, setup), in_axes=(0, 0, None, None, None)))
    after, _ = step(states, hp, stream, data, jnp.int32(0))
    after = host(after)
    assert tree_equal(jax.tree.map(lambda a: a[1], after), jax.tree.map(lambda a: a[1], before))
    assert not tree_equal(jax.tree.map(lambda a: a[0], after["variables"]),
                          jax.tree.map(lambda a: a[0], before["variables"]))
    assert int(after["epochs_run"][0]) == 1 and int(after["epochs_run"][1]) == 0


# ---- early stopping ----------------------------------------------------------------------------------

def test_early_stopping_mask_on_a_given_sequence_of_val_losses():
    """Patience 2 on val losses 3, 2, 2.5, 1.9, 2.0, 2.1 | 2.2, 1.0: best epoch 4, stops after epoch 6,
    and nothing changes afterwards (even when a later loss would have been a new best)."""
    setup = train.Setup(models.make_model("mlp", ()), patience=2)
    state = {"variables": {"w": jnp.float32(0)}, "opt_state": jnp.float32(0),
             "best_variables": {"w": jnp.float32(0)}, "best_val_loss": jnp.float32(jnp.inf),
             "best_epoch": jnp.int32(0), "bad_epochs": jnp.int32(0), "epochs_run": jnp.int32(0),
             "active": jnp.array(True)}
    step = jax.jit(partial(train._early_stopping, setup))
    seen = []
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 1.9, 2.0, 2.1, 2.2, 1.0], start=1):
        state = step(state, {"w": jnp.float32(epoch)}, jnp.float32(epoch), jnp.float32(loss))
        seen.append((int(state["epochs_run"]), int(state["best_epoch"]), bool(state["active"])))
    assert seen == [(1, 1, True), (2, 2, True), (3, 2, True), (4, 4, True), (5, 4, True), (6, 4, False),
                    (6, 4, False), (6, 4, False)]
    assert float(state["best_variables"]["w"]) == 4.0      # the best epoch's parameters
    assert float(state["variables"]["w"]) == 6.0           # the last epoch it trained
    assert float(state["best_val_loss"]) == pytest.approx(1.9)
    assert train.final_variables(setup, state)["w"] == 4.0
    assert train.final_variables(train.Setup(setup.model, patience=0), state)["w"] == 6.0


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
    setup = train.Setup(models.make_model("mlp", (8,)), optimizer="adam", batch_size=8, patience=patience)
    hp = hparams(lr=0.02)
    state = train.init(setup, hp, stream["key"])
    fn = epoch_fn(setup)
    snapshots, val_losses = [], []
    for epoch in range(6):
        state, metrics = fn(state, hp, stream, data, jnp.int32(epoch))
        snapshots.append(host(state))
        val_losses.append(float(metrics["val_loss"]))
    assert val_losses[1] > val_losses[0] and val_losses[2] > val_losses[0], val_losses  # the premise
    stop = 1 + patience
    assert [bool(s["active"]) for s in snapshots] == [True] * (stop - 1) + [False] * (6 - stop + 1)
    last = snapshots[stop - 1]
    assert int(last["epochs_run"]) == stop and int(last["best_epoch"]) == 1
    assert tree_equal(last["best_variables"], snapshots[0]["variables"])
    for later in snapshots[stop:]:
        assert tree_equal(later, last)
    assert tree_equal(train.final_variables(setup, last), snapshots[0]["variables"])


# ---- evaluation --------------------------------------------------------------------------------------

def test_evaluate_matches_a_hand_computation():
    """A linear classifier with chosen weights, 7 of 12 samples in batches of 3 (the last one padded)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 28, 28, 1)).astype(np.uint8)
    labels = rng.integers(0, 10, size=12).astype(np.int32)
    kernel = rng.normal(0, 0.05, size=(784, 10)).astype(np.float32)
    bias = rng.normal(0, 0.5, size=10).astype(np.float32)
    setup = train.Setup(models.make_model("mlp", ()), eval_batch=3)
    variables = {"params": {"Dense_0": {"kernel": jnp.asarray(kernel.T), "bias": jnp.asarray(bias)}}}   # (out, in)
    idx = np.array([11, 0, 5, 3, 8, 2, 9])
    got = train.evaluate(setup, variables, {"x": jnp.asarray(images), "y": jnp.asarray(labels)},
                         jnp.asarray(idx, jnp.int32))

    x = images[idx].reshape(len(idx), -1).astype(np.float64) / 255.0
    logits = x @ kernel.astype(np.float64) + bias
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    loss = -logp[np.arange(len(idx)), labels[idx]].mean()
    accuracy = (logits.argmax(1) == labels[idx]).mean()
    np.testing.assert_allclose(float(got["loss"]), loss, rtol=1e-5)
    assert float(got["accuracy"]) == pytest.approx(accuracy, abs=1e-7)


def test_epoch_with_draws_made_ahead_equals_draws_made_per_step(tiny):
    """train_epoch given epoch_noise's draws trains bit for bit as it does making them step by step."""
    setup, data, stream = tiny
    hp = hparams(lr=0.1, dropout=0.4)
    state = train.init(setup, hp, stream["key"])
    epoch = jnp.int32(2)
    noise = jax.jit(partial(train.epoch_noise, setup))(stream, epoch)
    assert [a.shape for a in noise] == [(3, 4, 6)]   # 3 steps of a batch of 4, one site of width 6
    assert train.epoch_noise_bytes(setup, 10) == 2 * 3 * 4 * 6
    ahead = jax.jit(partial(train.train_epoch, setup))(state, hp, stream, data, epoch, noise)
    per_step = epoch_fn(setup)(state, hp, stream, data, epoch)
    assert tree_equal(host(ahead), host(per_step))
    # The draws matter: other draws give other parameters.
    other = jax.jit(partial(train.train_epoch, setup))(state, hp, stream, data, epoch, (noise[0][::-1],))
    assert not tree_equal(host(other[0]["variables"]), host(per_step[0]["variables"]))
