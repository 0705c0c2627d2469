"""jaxmlp.nn: dropout on 16-bit draws with a traced rate, draws made ahead, and the fast layers."""

from __future__ import annotations

import flax.linen as flax_nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import models, nn

RATES = np.array([0.0, 0.1, 0.3, 0.5, 0.9, 0.99], np.float32)
N_UNITS = 400_000   # per rate: enough for tight binomial bounds, still a few MB


def _binomial_tol(rate: float, n: int) -> float:
    """Six standard deviations of a zeroed fraction, Binomial(n, rate) / n (false alarm < 1e-8)."""
    return 6.0 * np.sqrt(rate * (1.0 - rate) / n) + 1e-12


def vmapped_dropout(x, key):
    """dropout(x) for every rate of RATES in ONE jit(vmap) call, all members on the draws of one key."""
    fn = jax.jit(jax.vmap(nn.dropout, in_axes=(None, 0, None)))
    return np.asarray(fn(x, jnp.asarray(RATES), nn.uniform16(key, x.shape)))


@pytest.fixture(scope="module")
def dropped() -> tuple[np.ndarray, np.ndarray]:
    x = jax.random.normal(jax.random.key(1), (N_UNITS,), jnp.float32)
    return np.asarray(x), vmapped_dropout(x, jax.random.key(0))


# ---- draws and the dropout function ------------------------------------------------------------------

def test_uniform16_draws():
    draws = np.asarray(nn.uniform16(jax.random.key(0), (N_UNITS + 1,)))   # an odd count: half a word left
    assert draws.dtype == np.uint16 and draws.shape == (N_UNITS + 1,)
    sd = 65536 / np.sqrt(12 * draws.size)   # of the mean of uniform draws on 0..65535
    assert abs(draws.mean() - 32767.5) < 6 * sd
    assert draws.min() < 16 and draws.max() > 65519
    assert nn.uniform16(jax.random.key(0), (3, 5)).shape == (3, 5)
    assert np.array_equal(nn.uniform16(jax.random.key(4), (7,)), nn.uniform16(jax.random.key(4), (7,)))


def test_dropout_threshold_is_exact_in_steps_of_two_to_the_minus_16():
    """Over all 65536 draw values a rate r drops exactly round(r·65536) units: the smallest draws."""
    draws = jnp.arange(65536, dtype=jnp.uint32).astype(jnp.uint16)
    ones = jnp.ones(65536, jnp.float32)
    for rate in (0.0, 1 / 65536, 0.1, 0.5, 0.9):
        out = np.asarray(nn.dropout(ones, rate, draws))
        n_drop = round(rate * 65536)
        assert np.all(out[:n_drop] == 0) and np.all(out[n_drop:] != 0), rate


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
    out = vmapped_dropout(jnp.ones((N_UNITS,), jnp.float32), jax.random.key(7))
    for rate, o in zip(RATES, out):
        sd = np.sqrt(rate / ((1.0 - rate) * N_UNITS))
        assert abs(o.mean() - 1.0) <= 6 * sd + 1e-6, (rate, o.mean())


def test_dropout_accepts_a_python_float_rate():
    x = jnp.ones((1000,))
    out = np.asarray(nn.dropout(x, 0.5, nn.uniform16(jax.random.key(0), x.shape)))
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
    a, b = (np.asarray(nn.dropout(x, 0.5, nn.uniform16(jax.random.key(k), x.shape))) != 0 for k in (0, 1))
    # Independent masks agree on about half of the units; identical ones on all.
    assert 0.45 < np.mean(a == b) < 0.55


# ---- the Dropout module ------------------------------------------------------------------------------

def _module_out(rate, x, key, deterministic=False):
    return nn.Dropout(rate).apply({}, x, deterministic=deterministic, rngs={"dropout": key})


def test_dropout_module_with_a_traced_rate_under_vmap_equals_each_rate_alone():
    x = jax.random.normal(jax.random.key(1), (8, 50))
    rates = jnp.array([0.0, 0.25, 0.6], jnp.float32)
    key = jax.random.key(3)
    together = np.asarray(jax.jit(jax.vmap(_module_out, in_axes=(0, None, None)))(rates, x, key))
    for k, rate in enumerate(rates):
        assert np.array_equal(together[k], np.asarray(jax.jit(_module_out)(rate, x, key))), float(rate)
        # A Python rate draws the same numbers as an array one.
        np.testing.assert_allclose(together[k], np.asarray(_module_out(float(rate), x, key)), rtol=1e-6)
    assert np.array_equal(together[0], np.asarray(x))
    assert np.mean(together[2] == 0) > 0.4


def test_dropout_module_is_the_identity_when_deterministic_or_at_a_python_zero():
    x = jax.random.normal(jax.random.key(1), (4, 6))
    assert np.array_equal(_module_out(jnp.float32(0.9), x, jax.random.key(0), deterministic=True), x)
    # A Python 0 never asks for the "dropout" stream: it runs without one.
    assert np.array_equal(nn.Dropout(0.0).apply({}, x, deterministic=False), x)
    assert np.array_equal(nn.Dropout(0).apply({}, x, deterministic=False), x)


def test_draws_of_step_are_the_draws_a_step_makes():
    """Draws made ahead and passed back give bit for bit the step that makes them itself; a model
    whose rate is a Python 0 makes none."""
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    key = jax.random.key(5)
    model = models.MLP(hidden=(16, 8), dropout=jnp.float32(0.3))
    variables = models.init(model, jax.random.key(0), (28, 28, 1))
    draws = nn.draws_of_step(model, variables, x, key)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), draws) == {
        "Dropout_0": {"draws": ((4, 16), jnp.uint16)}, "Dropout_1": {"draws": ((4, 8), jnp.uint16)}}
    made, _ = models.apply(model, variables, x, train=True, dropout_key=key)
    given, _ = models.apply(model, variables, x, train=True, draws=draws)
    assert np.array_equal(np.asarray(made), np.asarray(given))
    other, _ = models.apply(model, variables, x, train=True, draws=jax.tree.map(lambda a: a[::-1], draws))
    assert not np.allclose(np.asarray(other), np.asarray(made))

    none = models.MLP(hidden=(16, 8), dropout=0.0)
    assert nn.draws_of_step(none, variables, x, key) == {}


# ---- layers ------------------------------------------------------------------------------------------

def test_conv3x3_and_pool_equal_flax_conv_and_max_pool():
    """The im2col convolution and reshape pooling give nn.Conv's and nn.max_pool's numbers, and gradients."""
    x = jax.random.normal(jax.random.key(1), (2, 14, 14, 5))
    ours, ref = nn.Conv3x3(7), flax_nn.Conv(7, (3, 3))
    params = ours.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref.init(jax.random.key(2), x))
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)
    g_ours = jax.grad(lambda p: jnp.sum(jnp.sin(ours.apply(p, x))))(params)
    g_ref = jax.grad(lambda p: jnp.sum(jnp.sin(ref.apply(p, x))))(params)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(nn.max_pool_2x2(x), flax_nn.max_pool(x, (2, 2), strides=(2, 2)))
    odd = x[:, :13, :11]    # the last row / column are dropped, as in a VALID pooling
    assert nn.max_pool_2x2(odd).shape == (2, 6, 5, 5)
    np.testing.assert_array_equal(nn.max_pool_2x2(odd), flax_nn.max_pool(odd, (2, 2), strides=(2, 2)))


def test_dense_is_flax_dense_with_the_kernel_transposed():
    """Same initial values as ``nn.Dense`` (transposed) and the same outputs for them."""
    x = jax.random.normal(jax.random.key(1), (5, 7))
    ours = nn.Dense(3).init(jax.random.key(0), x)
    flax = flax_nn.Dense(3).init(jax.random.key(0), x)
    assert ours["params"]["kernel"].shape == (3, 7)
    np.testing.assert_array_equal(ours["params"]["kernel"], flax["params"]["kernel"].T)
    np.testing.assert_allclose(nn.Dense(3).apply(ours, x), flax_nn.Dense(3).apply(flax, x), rtol=1e-6, atol=1e-6)
