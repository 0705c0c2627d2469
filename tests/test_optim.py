"""Optimizers by name: L1/L2 penalties on weight matrices only, L2 in the gradient, hyperparameters in state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmlp import optim
from jaxmlp.errors import UsageError


def small_tree() -> dict:
    """Two dense layers with a batch norm between: only the two kernels are weight matrices."""
    return {
        "Dense_0": {"kernel": jnp.array([[1.0, -2.0], [3.0, -4.0]]), "bias": jnp.array([10.0, -10.0])},
        "BatchNorm_0": {"scale": jnp.array([5.0, 5.0]), "bias": jnp.array([1.0, 1.0])},
        "Dense_1": {"kernel": jnp.array([[0.5], [-0.5]]), "bias": jnp.array([7.0])},
    }


def test_l1_penalty_counts_weight_matrices_only():
    # |1|+|-2|+|3|+|-4| + |0.5|+|-0.5| = 11; biases (10, -10, 7) and BN (5, 5, 1, 1) are left out.
    assert float(optim.l1_penalty(small_tree(), jnp.float32(0.1))) == pytest.approx(1.1, rel=1e-6)
    assert float(optim.l1_penalty(small_tree(), jnp.float32(0.0))) == 0.0


def test_l2_penalty_counts_weight_matrices_only():
    # 1+4+9+16 + 0.25+0.25 = 30.5
    assert float(optim.l2_penalty(small_tree(), jnp.float32(0.01))) == pytest.approx(0.305, rel=1e-6)
    assert float(optim.l2_penalty(small_tree(), 2.0)) == pytest.approx(61.0, rel=1e-6)


def test_weight_matrices_mask():
    mask = optim.weight_matrices(small_tree())
    assert mask["Dense_0"] == {"kernel": True, "bias": False}
    assert mask["BatchNorm_0"] == {"scale": False, "bias": False}
    assert mask["Dense_1"] == {"kernel": True, "bias": False}


def _grads(params):
    keys = iter(jax.random.split(jax.random.key(0), 6))
    return jax.tree.map(lambda p: jax.random.normal(next(keys), p.shape), params)


def test_sgd_update_adds_two_lambda_w_to_weight_matrices_only():
    params, lr, l2 = small_tree(), 0.1, 0.01
    grads = _grads(params)
    tx = optim.make_optimizer("sgd", lr, l2)
    updates, _ = tx.update(grads, tx.init(params), params)
    for layer in params:
        for name, w in params[layer].items():
            g = np.asarray(grads[layer][name], np.float64)
            decay = 2 * l2 * np.asarray(w, np.float64) if w.ndim > 1 else 0.0
            np.testing.assert_allclose(updates[layer][name], -lr * (g + decay), rtol=1e-6, atol=1e-7,
                                       err_msg=f"{layer}/{name}")


def test_l2_zero_leaves_the_gradient_alone():
    params = small_tree()
    grads = _grads(params)
    tx = optim.make_optimizer("sgd", 0.5, 0.0)
    updates, _ = tx.update(grads, tx.init(params), params)
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
        np.testing.assert_allclose(u, -0.5 * np.asarray(g), rtol=1e-6)


def test_update_reads_hyperparameters_from_the_state():
    """A transform built with placeholder values updates with the values its state was seeded with
    (what train.Setup.tx relies on)."""
    params = small_tree()
    grads = _grads(params)
    state = optim.make_optimizer("sgd", 0.5, 0.1).init(params)
    placeholder = optim.make_optimizer("sgd")
    u_state, _ = placeholder.update(grads, state, params)
    u_direct, _ = optim.make_optimizer("sgd", 0.5, 0.1).update(grads, state, params)
    for a, b in zip(jax.tree.leaves(u_state), jax.tree.leaves(u_direct)):
        np.testing.assert_array_equal(a, b)
    k = params["Dense_0"]["kernel"]
    np.testing.assert_allclose(u_state["Dense_0"]["kernel"],
                               -0.5 * (np.asarray(grads["Dense_0"]["kernel"]) + 0.2 * np.asarray(k)), rtol=1e-6)


def test_learning_rate_and_l2_live_in_the_state_per_member():
    params = small_tree()
    lrs = jnp.array([0.1, 0.01, 0.001], jnp.float32)
    l2s = jnp.array([0.0, 0.5, 1.0], jnp.float32)
    states = jax.vmap(lambda lr, l2: optim.make_optimizer("adam", lr, l2).init(params))(lrs, l2s)
    np.testing.assert_array_equal(states.hyperparams["learning_rate"], lrs)
    np.testing.assert_array_equal(states.hyperparams["l2"], l2s)

    # One sgd step per member scales by its own learning rate (no L2 here).
    sgd_states = jax.vmap(lambda lr: optim.make_optimizer("sgd", lr, 0.0).init(params))(lrs)
    grads = _grads(params)
    updates, _ = jax.jit(jax.vmap(optim.make_optimizer("sgd").update, in_axes=(None, 0, None)))(
        grads, sgd_states, params)
    for k, lr in enumerate(np.asarray(lrs)):
        np.testing.assert_allclose(updates["Dense_1"]["bias"][k], -lr * np.asarray(grads["Dense_1"]["bias"]),
                                   rtol=1e-6)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_decreases_the_loss(name):
    """Least squares with a bias: 20 steps of every optimizer at a modest rate lower the loss a lot."""
    x = jax.random.normal(jax.random.key(0), (32, 4))
    y = x @ jnp.array([[1.0], [-2.0], [0.5], [3.0]]) + 1.0
    params = {"w": jnp.zeros((4, 1)), "b": jnp.zeros((1,))}

    def loss(p):
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    tx = optim.make_optimizer(name, 0.05, 1e-4)

    @jax.jit
    def run(p):
        def step(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, u), s), loss(p)
        (p, _), losses = jax.lax.scan(step, (p, tx.init(p)), None, length=20)
        return losses, loss(p)

    losses, final = run(params)
    assert float(final) < 0.5 * float(losses[0]), (name, losses)


def _step_scales(lr_schedule: str, total_steps: int, n: int) -> list[float]:
    """The first n sgd updates of a unit gradient at lr 1, i.e. minus the schedule's multipliers."""
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
    grads = jax.tree.map(jnp.ones_like, params)
    tx = optim.make_optimizer("sgd", 1.0, 0.0, lr_schedule, total_steps)
    state, out = tx.init(params), []
    for _ in range(n):
        updates, state = tx.update(grads, state, params)
        out.append(-float(updates["b"][0]))
    return out


def test_schedules_scale_each_step():
    # cosine over 4 steps: (1 + cos(pi k / 4)) / 2, then 0.
    expected = [(1 + np.cos(np.pi * min(k, 4) / 4)) / 2 for k in range(6)]
    np.testing.assert_allclose(_step_scales("cosine", 4, 6), expected, rtol=1e-6, atol=1e-7)
    # anneal over 10 steps: 1 for the first 7, then linearly to 0 over the last 3.
    np.testing.assert_allclose(_step_scales("anneal", 10, 12), [1] * 8 + [2 / 3, 1 / 3, 0, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_step_scales("constant", 10, 12), [1] * 12)
    np.testing.assert_allclose(_step_scales("cosine", 0, 3), [1] * 3)   # no length: no schedule
    with pytest.raises(UsageError, match="unknown --lr-schedule 'warmup'"):
        optim.make_optimizer("sgd", 0.1, 0.0, "warmup", 10)


def test_unknown_optimizer_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown optimizer 'lbfgs'.*sgd.*adamw"):
        optim.make_optimizer("lbfgs")
