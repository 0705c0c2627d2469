"""Models: output shapes, and the array-rate dropout that a vmapped sweep relies on."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import models

RATES = np.array([0.0, 0.1, 0.3, 0.5, 0.9, 0.99], np.float32)
N_UNITS = 400_000   # per rate: enough for tight binomial bounds, still a few MB


def _binomial_tol(rate: float, n: int) -> float:
    """Six standard deviations of a zeroed fraction, Binomial(n, rate) / n (false alarm < 1e-8)."""
    return 6.0 * np.sqrt(rate * (1.0 - rate) / n) + 1e-12


@pytest.fixture(scope="module")
def dropped() -> tuple[np.ndarray, np.ndarray]:
    """`x` and dropout(x) for every rate of RATES in ONE jit(vmap) call with one shared key."""
    x = jax.random.normal(jax.random.key(1), (N_UNITS,), jnp.float32)
    fn = jax.jit(jax.vmap(models.dropout, in_axes=(None, 0, None)))
    out = fn(x, jnp.asarray(RATES), jax.random.key(0))
    return np.asarray(x), np.asarray(out)


# ---- dropout -----------------------------------------------------------------------------------------

def test_dropout_zeroes_a_binomial_fraction_per_rate(dropped):
    x, out = dropped
    assert np.all(x != 0)   # so a zero in `out` means "dropped"
    for rate, o in zip(RATES, out):
        zeroed = float(np.mean(o == 0))
        assert abs(zeroed - rate) <= _binomial_tol(float(rate), N_UNITS), (rate, zeroed)


def test_dropout_scales_survivors_by_one_over_keep(dropped):
    x, out = dropped
    for rate, o in zip(RATES, out):
        kept = o != 0
        # Each of the (at most three) float32 roundings adds <= 2**-24 relative error: 3e-7 bounds them.
        expected = x[kept].astype(np.float64) / (1.0 - np.float64(rate))
        np.testing.assert_allclose(o[kept], expected, rtol=3e-7, atol=0)


def test_dropout_rate_zero_is_the_identity(dropped):
    x, out = dropped
    assert np.array_equal(out[0], x)


def test_dropout_preserves_the_mean_in_expectation():
    # On ones, mean(out) = kept / (n (1 - r)); its standard deviation is sqrt(r / ((1 - r) n)).
    n = 400_000
    ones = jnp.ones((n,), jnp.float32)
    fn = jax.jit(jax.vmap(models.dropout, in_axes=(None, 0, None)))
    out = np.asarray(fn(ones, jnp.asarray(RATES), jax.random.key(7)))
    for rate, o in zip(RATES, out):
        sd = np.sqrt(rate / ((1.0 - rate) * n))
        assert abs(o.mean() - 1.0) <= 6 * sd + 1e-6, (rate, o.mean())


def test_dropout_key_none_is_the_identity():
    x = jax.random.normal(jax.random.key(3), (5, 7))
    for rate in (0.0, 0.5, jnp.float32(0.9)):
        assert np.array_equal(np.asarray(models.dropout(x, rate, None)), np.asarray(x))


def test_dropout_accepts_a_python_float_rate():
    x = jnp.ones((1000,))
    out = np.asarray(models.dropout(x, 0.5, jax.random.key(0)))
    assert set(np.unique(out).tolist()) == {0.0, 2.0}


def test_members_with_one_key_share_draws(dropped):
    """Common random numbers: a unit kept at a higher rate is kept at every lower rate."""
    _, out = dropped
    kept = out != 0
    for low, high in zip(range(len(RATES) - 1), range(1, len(RATES))):
        assert np.all(kept[low][kept[high]]), (RATES[low], RATES[high])
        assert kept[high].sum() < kept[low].sum() or RATES[low] == RATES[high]


def test_different_keys_give_different_masks():
    x = jnp.ones((10_000,))
    a = np.asarray(models.dropout(x, 0.5, jax.random.key(0))) != 0
    b = np.asarray(models.dropout(x, 0.5, jax.random.key(1))) != 0
    # Independent masks agree on about half of the units; identical ones on all.
    assert 0.45 < np.mean(a == b) < 0.55


# ---- modules -----------------------------------------------------------------------------------------

def _shapes(model, batch: int, train: bool):
    """Variables and logits as shapes only (jax.eval_shape: traced, never compiled or run)."""
    def run():
        variables = models.init(model, jax.random.key(0), (28, 28, 1))
        x = jnp.zeros((batch, 28, 28, 1), jnp.float32)
        key = jax.random.key(2) if train else None
        return variables, models.apply(model, variables, x, jnp.float32(0.5), key, train=train)[0]
    return jax.eval_shape(run)


@pytest.mark.parametrize("hidden", [(), (8,), (32, 16), (5, 6, 7)])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_mlp_shapes(hidden, batch_norm):
    model = models.make_model("mlp", hidden, batch_norm=batch_norm)
    variables, logits = _shapes(model, 3, train=True)
    params = variables["params"]
    widths = [784, *hidden, 10]
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        assert params[f"Dense_{i}"]["kernel"].shape == (b, a)   # stored (out, in): see models.Dense
        assert params[f"Dense_{i}"]["bias"].shape == (b,)
    assert ("batch_stats" in variables) == (batch_norm and len(hidden) > 0)
    if batch_norm:
        for i, w in enumerate(hidden):
            assert params[f"BatchNorm_{i}"]["scale"].shape == (w,)
            assert variables["batch_stats"][f"BatchNorm_{i}"]["mean"].shape == (w,)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    assert _shapes(model, 5, train=False)[1].shape == (5, 10)


def test_mlp_batch_norm_updates_statistics_only_in_training():
    model = models.make_model("mlp", (8,), batch_norm=True)
    variables = jax.jit(models.init, static_argnums=(0, 2))(model, jax.random.key(0), (28, 28, 1))
    x = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1))
    apply = jax.jit(models.apply, static_argnums=(0, 5))
    _, train_stats = apply(model, variables, x, jnp.float32(0.0), None, True)
    _, eval_stats = apply(model, variables, x, jnp.float32(0.0), None, False)
    before = variables["batch_stats"]["BatchNorm_0"]["mean"]
    assert not np.allclose(train_stats["BatchNorm_0"]["mean"], before)
    assert np.array_equal(eval_stats["BatchNorm_0"]["mean"], before)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_shapes(batch_norm):
    model = models.make_model("cnn", (32,), batch_norm=batch_norm)
    variables, logits = _shapes(model, 2, train=True)
    params = variables["params"]
    assert params["Conv3x3_0"]["kernel"].shape == (3, 3, 1, 32)
    assert params["Conv3x3_1"]["kernel"].shape == (3, 3, 32, 64)
    assert params["Dense_0"]["kernel"].shape == (32, 7 * 7 * 64)
    assert params["Dense_1"]["kernel"].shape == (10, 32)
    assert ("batch_stats" in variables) == batch_norm
    assert logits.shape == (2, 10)
    assert _shapes(model, 4, train=False)[1].shape == (4, 10)


def test_model_dropout_rate_is_vmappable():
    """jit(vmap) over per-member rates: rate 0 gives the evaluation output, other rates differ."""
    model = models.make_model("mlp", (64, 32))
    variables = jax.jit(models.init, static_argnums=(0, 2))(model, jax.random.key(0), (28, 28, 1))
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))

    def logits(rate, key):
        return models.apply(model, variables, x, rate, key, train=key is not None)[0]

    out = np.asarray(jax.jit(jax.vmap(logits, in_axes=(0, None)))(jnp.array([0.0, 0.5, 0.9], jnp.float32),
                                                                   jax.random.key(5)))
    plain = jax.jit(logits)(jnp.float32(0.0), None)
    np.testing.assert_allclose(out[0], np.asarray(plain), rtol=1e-6, atol=1e-6)
    assert not np.allclose(out[1], out[0]) and not np.allclose(out[2], out[1])


def test_conv3x3_and_pool_equal_flax_conv_and_max_pool():
    """The im2col convolution and reshape pooling give nn.Conv's and nn.max_pool's numbers, and gradients."""
    import flax.linen as nn

    from jaxmlp.models import Conv3x3, max_pool_2x2

    x = jax.random.normal(jax.random.key(1), (2, 14, 14, 5))
    ours, ref = Conv3x3(7), nn.Conv(7, (3, 3))
    params = ours.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref.init(jax.random.key(2), x))
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)
    g_ours = jax.grad(lambda p: jnp.sum(jnp.sin(ours.apply(p, x))))(params)
    g_ref = jax.grad(lambda p: jnp.sum(jnp.sin(ref.apply(p, x))))(params)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))


def test_dense_is_flax_dense_with_the_kernel_transposed():
    """Same initial values as ``nn.Dense`` (transposed) and the same outputs for them."""
    x = jax.random.normal(jax.random.key(1), (5, 7))
    ours = models.Dense(3).init(jax.random.key(0), x)
    flax = nn.Dense(3).init(jax.random.key(0), x)
    np.testing.assert_array_equal(ours["params"]["kernel"], flax["params"]["kernel"].T)
    np.testing.assert_allclose(models.Dense(3).apply(ours, x), nn.Dense(3).apply(flax, x), rtol=1e-6, atol=1e-6)
