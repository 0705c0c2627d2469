"""Optimizers built from a member's values: L1/L2 penalties on weight matrices only, L2 in the gradient
under every optimizer, per-member values under vmap, momentum, AdamW's masked decay, schedules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmlp import optim
from jaxmlp.errors import UsageError
from test_hparams import table_hp


def small_tree() -> dict:
    """Two dense layers with a batch norm between: only the two kernels are weight matrices."""
    return {
        "Dense_0": {"kernel": jnp.array([[1.0, -2.0], [3.0, -4.0]]), "bias": jnp.array([10.0, -10.0])},
        "BatchNorm_0": {"scale": jnp.array([5.0, 5.0]), "bias": jnp.array([1.0, 1.0])},
        "Dense_1": {"kernel": jnp.array([[0.5], [-0.5]]), "bias": jnp.array([7.0])},
    }


def _grads(params, seed: int = 0):
    keys = iter(jax.random.split(jax.random.key(seed), 6))
    return jax.tree.map(lambda p: jax.random.normal(next(keys), p.shape), params)


def one_update(optimizer, hp, grads=None, params=None, **kwargs):
    """The first update of `optimizer` built from `hp` (on small_tree and _grads by default)."""
    params = small_tree() if params is None else params
    grads = _grads(params) if grads is None else grads
    tx = optim.make_optimizer(optimizer, hp, **kwargs)
    return tx.update(grads, tx.init(params), params)[0]


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# ---- penalties ---------------------------------------------------------------------------------------

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


def test_is_zero_means_a_python_zero_only():
    assert optim.is_zero(0.0) and optim.is_zero(0)
    assert not optim.is_zero(jnp.float32(0.0)) and not optim.is_zero(1e-8)


# ---- L2 ----------------------------------------------------------------------------------------------

def test_sgd_update_adds_two_lambda_w_to_weight_matrices_only():
    params, lr, l2 = small_tree(), 0.1, 0.01
    grads = _grads(params)
    updates = one_update("sgd", table_hp(lr=lr, l2=l2), grads)
    for layer in params:
        for name, w in params[layer].items():
            g = np.asarray(grads[layer][name], np.float64)
            decay = 2 * l2 * np.asarray(w, np.float64) if w.ndim > 1 else 0.0
            np.testing.assert_allclose(updates[layer][name], -lr * (g + decay), rtol=1e-6, atol=1e-7,
                                       err_msg=f"{layer}/{name}")


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_l2_is_the_gradient_of_lambda_w_squared_under_every_optimizer(name):
    """Coupled L2 (Keras): the update with λ₂ is the update without it of the gradient g + 2λ₂w (on
    weight matrices); biases and batch-norm parameters are left alone."""
    params, l2 = small_tree(), 0.05
    grads = _grads(params)
    penalised = jax.tree.map(lambda g, w: g + 2 * l2 * w if w.ndim > 1 else g, grads, params)
    assert_trees_close(one_update(name, table_hp(lr=0.1, l2=l2), grads),
                       one_update(name, {**table_hp(lr=0.1), "l2": 0.0}, penalised), rtol=1e-5)


def test_python_zero_leaves_the_term_out_with_the_same_numbers():
    """l2 = 0.0 (Python) drops the L2 transform and momentum = 0.0 drops sgd's velocity; an array 0 keeps
    them in the program (a state of its own) and gives the same update."""
    params = small_tree()
    skipped = {**table_hp(lr=0.5), "l2": 0.0, "momentum": 0.0}
    kept = table_hp(lr=0.5)
    for a, b in zip(jax.tree.leaves(one_update("sgd", skipped)), jax.tree.leaves(_grads(params))):
        np.testing.assert_allclose(a, -0.5 * np.asarray(b), rtol=1e-6)
    assert_trees_close(one_update("sgd", skipped), one_update("sgd", kept), rtol=0, atol=0)
    n_state = lambda hp: len(jax.tree.leaves(optim.make_optimizer("sgd", hp).init(params)))
    assert n_state(skipped) == 0                          # no velocity, no L2 state
    assert n_state(kept) == len(jax.tree.leaves(params))  # a velocity per parameter


# ---- per-member values -------------------------------------------------------------------------------

def test_each_member_updates_with_its_own_values_under_vmap():
    """The chain is built inside the vmapped function from each member's (traced) lr and l2."""
    params, grads = small_tree(), _grads(small_tree())
    lrs = jnp.array([0.1, 0.01, 0.001], jnp.float32)
    l2s = jnp.array([0.0, 0.5, 1.0], jnp.float32)
    updates = jax.jit(jax.vmap(lambda lr, l2: one_update("sgd", table_hp(lr=lr, l2=l2), grads)))(lrs, l2s)
    for k, (lr, l2) in enumerate(zip(np.asarray(lrs), np.asarray(l2s))):
        np.testing.assert_allclose(updates["Dense_1"]["bias"][k], -lr * np.asarray(grads["Dense_1"]["bias"]),
                                   rtol=1e-6)
        kernel = np.asarray(grads["Dense_0"]["kernel"]) + 2 * l2 * np.asarray(params["Dense_0"]["kernel"])
        np.testing.assert_allclose(updates["Dense_0"]["kernel"][k], -lr * kernel, rtol=1e-6)
        alone = one_update("sgd", table_hp(lr=lr, l2=l2), grads)
        assert_trees_close(jax.tree.map(lambda a: a[k], updates), alone)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_decreases_the_loss(name):
    """Least squares with a bias: 20 steps of every optimizer at a modest rate lower the loss a lot."""
    x = jax.random.normal(jax.random.key(0), (32, 4))
    y = x @ jnp.array([[1.0], [-2.0], [0.5], [3.0]]) + 1.0
    params = {"w": jnp.zeros((4, 1)), "b": jnp.zeros((1,))}

    def loss(p):
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    tx = optim.make_optimizer(name, table_hp(lr=0.05, l2=1e-4, **optim.OPTIMIZERS[name].defaults))

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


# ---- the optimizers' own numbers ---------------------------------------------------------------------

def test_sgd_momentum_is_heavy_ball_over_two_steps():
    """v₁ = g₁, p₁ = p₀ - lr·v₁; v₂ = g₂ + m·v₁, p₂ = p₁ - lr·v₂, with g the gradient of
    ½·Σ a·(p - t)² at the current parameters. The 'momentum' optimizer is sgd with m = 0.9 by default."""
    a, t = np.array([1.0, 3.0, 0.5]), np.array([2.0, -1.0, 4.0])
    lr, m = 0.1, 0.9
    grad = lambda p: a * (p - t)
    p0 = np.array([0.5, 0.5, -0.5])
    p1 = p0 - lr * grad(p0)
    p2 = p1 - lr * (grad(p1) + m * grad(p0))

    def two_steps(name, hp):
        tx = optim.make_optimizer(name, hp)
        p = {"w": jnp.asarray(p0, jnp.float32)}
        state = tx.init(p)
        for _ in range(2):
            u, state = tx.update({"w": jnp.asarray(a) * (p["w"] - jnp.asarray(t))}, state, p)
            p = optax.apply_updates(p, u)
        return np.asarray(p["w"])

    np.testing.assert_allclose(two_steps("sgd", table_hp(lr=lr, momentum=m)), p2, rtol=1e-6)
    default = optim.OPTIMIZERS["momentum"].defaults["momentum"]
    np.testing.assert_allclose(two_steps("momentum", table_hp(lr=lr, momentum=default)), p2, rtol=1e-6)
    plain = p0 - lr * grad(p0)
    np.testing.assert_allclose(two_steps("sgd", table_hp(lr=lr)), plain - lr * grad(plain), rtol=1e-6)


def test_adamw_decays_weight_matrices_only():
    """Adam's first step is g / (|g| + ε) (bias-corrected moments: g and g²); AdamW then adds wd·w on
    weight matrices only, all scaled by -lr. With zero gradients only the decay moves the kernels."""
    params, lr, wd = small_tree(), 0.01, 0.1
    hp = table_hp(lr=lr, weight_decay=wd)
    for grads in (_grads(params), jax.tree.map(jnp.zeros_like, params)):
        updates = one_update("adamw", hp, grads)
        for layer in params:
            for name, w in params[layer].items():
                g = np.asarray(grads[layer][name], np.float64)
                decay = wd * np.asarray(w, np.float64) if w.ndim > 1 else 0.0
                np.testing.assert_allclose(updates[layer][name], -lr * (g / (np.abs(g) + 1e-8) + decay),
                                           rtol=1e-5, atol=1e-7, err_msg=f"{layer}/{name}")


def test_a_user_factory_gives_the_builtin_update():
    """optimizer = hp -> optax transformation: the L2 term is added in front of it as for a built-in."""
    hp = table_hp(lr=0.1, l2=0.01)
    user = one_update(lambda hp: optax.sgd(hp["lr"]), hp)
    assert_trees_close(user, one_update("sgd", hp), rtol=0, atol=0)
    assert_trees_close(user, one_update("sgd", {**hp, "momentum": 0.0}), rtol=0, atol=0)


# ---- schedules ---------------------------------------------------------------------------------------

def _step_scales(lr_schedule: str, total_steps: int, n: int) -> list[float]:
    """The first n sgd updates of a unit gradient at lr 1, i.e. minus the schedule's multipliers."""
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
    grads = jax.tree.map(jnp.ones_like, params)
    tx = optim.make_optimizer("sgd", table_hp(lr=1.0), lr_schedule, total_steps)
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
    assert optim.schedule("constant", 10) is None and optim.schedule("anneal", 0) is None
    with pytest.raises(UsageError, match="unknown --lr-schedule 'warmup'"):
        optim.make_optimizer("sgd", table_hp(), "warmup", 10)


def test_unknown_optimizer_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown optimizer 'lbfgs'.*sgd.*adamw"):
        optim.make_optimizer("lbfgs", table_hp())
