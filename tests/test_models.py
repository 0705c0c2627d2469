"""Models: the registry, output shapes, batch norm, and a dropout rate that varies per vmapped member."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import models
from jaxmlp.errors import UsageError
from test_hparams import table_hp

SHAPE = (28, 28, 1)


def built(name: str, hidden, batch_norm: bool = False, **hp):
    """A registered model for table defaults (float32 arrays) overridden by `hp` (values as given)."""
    return models.build(name, models.Spec(tuple(hidden), "relu", batch_norm, 10), {**table_hp(), **hp})


def _shapes(model, batch: int, train: bool):
    """Variables and logits as shapes only (jax.eval_shape: traced, never compiled or run)."""
    def run():
        variables = models.init(model, jax.random.key(0), SHAPE)
        x = jnp.zeros((batch, *SHAPE), jnp.float32)
        key = jax.random.key(2) if train else None
        return variables, models.apply(model, variables, x, train=train, dropout_key=key)[0]
    return jax.eval_shape(run)


# ---- registry ----------------------------------------------------------------------------------------

def test_builtin_models_take_the_members_values():
    mlp = built("mlp", (8,), dropout=0.25)
    assert isinstance(mlp, models.MLP) and mlp.hidden == (8,) and float(mlp.dropout) == 0.25
    assert mlp.bn_momentum == 0.99          # without batch norm, bn_momentum is not read
    mlp_bn = built("mlp", (8,), batch_norm=True, bn_momentum=0.8)
    assert float(mlp_bn.bn_momentum) == pytest.approx(0.8)
    assert isinstance(built("cnn", (32,)), models.CNN)
    # A model without batch norm reads only the rate: hp needs nothing else.
    spec = models.Spec((8,), "tanh", False, 3)
    assert models.build("mlp", spec, {"dropout": 0.0}).num_classes == 3


def test_a_factory_and_a_registered_builder(monkeypatch):
    factory = lambda hp: models.MLP(hidden=(4,), dropout=hp["dropout"])
    assert models.build(factory, models.Spec(), {"dropout": 0.5}) == models.MLP(hidden=(4,), dropout=0.5)
    monkeypatch.setitem(models.REGISTRY, "linear",
                        lambda spec, hp: models.MLP(hidden=(), num_classes=spec.num_classes))
    assert models.register("linear", models.REGISTRY["linear"]) is models.REGISTRY["linear"]
    linear = models.build("linear", models.Spec(num_classes=4), {})
    assert models.n_params(linear, SHAPE) == 784 * 4 + 4
    with pytest.raises(UsageError, match="unknown model 'resnet'; choose one of: mlp, cnn, linear"):
        models.build("resnet", models.Spec(), {})


def test_n_params_counts_without_computing():
    assert models.n_params(models.MLP(hidden=(8,)), SHAPE) == 784 * 8 + 8 + 8 * 10 + 10
    # Batch norm adds a scale and a bias per unit (its statistics are not parameters).
    assert models.n_params(models.MLP(hidden=(8,), batch_norm=True), SHAPE) == 784 * 8 + 8 + 2 * 8 + 8 * 10 + 10


# ---- modules -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("hidden", [(), (8,), (32, 16), (5, 6, 7)])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_mlp_shapes(hidden, batch_norm):
    model = built("mlp", hidden, batch_norm, dropout=0.5)
    variables, logits = _shapes(model, 3, train=True)
    params = variables["params"]
    widths = [784, *hidden, 10]
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        assert params[f"Dense_{i}"]["kernel"].shape == (b, a)   # stored (out, in): see jaxmlp.nn.Dense
        assert params[f"Dense_{i}"]["bias"].shape == (b,)
    assert ("batch_stats" in variables) == (batch_norm and len(hidden) > 0)
    if batch_norm:
        for i, w in enumerate(hidden):
            assert params[f"BatchNorm_{i}"]["scale"].shape == (w,)
            assert variables["batch_stats"][f"BatchNorm_{i}"]["mean"].shape == (w,)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    assert _shapes(model, 5, train=False)[1].shape == (5, 10)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_shapes(batch_norm):
    model = built("cnn", (32,), batch_norm, dropout=0.5)
    variables, logits = _shapes(model, 2, train=True)
    params = variables["params"]
    assert params["Conv3x3_0"]["kernel"].shape == (3, 3, 1, 32)
    assert params["Conv3x3_1"]["kernel"].shape == (3, 3, 32, 64)
    assert params["Dense_0"]["kernel"].shape == (32, 7 * 7 * 64)
    assert params["Dense_1"]["kernel"].shape == (10, 32)
    assert ("batch_stats" in variables) == batch_norm
    assert logits.shape == (2, 10)
    assert _shapes(model, 4, train=False)[1].shape == (4, 10)
    # (N, H, W) images are taken as one channel.
    assert jax.eval_shape(lambda: models.init(model, jax.random.key(0), (28, 28)))["params"]["Conv3x3_0"][
        "kernel"].shape == (3, 3, 1, 32)


def test_batch_norm_moves_its_statistics_by_the_members_momentum_in_training_only():
    """Running mean after one training batch: m·0 + (1 - m)·(the batch mean of the layer's input)."""
    m = 0.8
    model = built("mlp", (8,), batch_norm=True, bn_momentum=jnp.float32(m), dropout=0.0)
    variables = jax.jit(partial(models.init, model), static_argnums=1)(jax.random.key(0), SHAPE)
    x = jax.random.uniform(jax.random.key(1), (16, *SHAPE))
    apply = jax.jit(partial(models.apply, model), static_argnums=2)
    _, train_stats = apply(variables, x, True)
    _, eval_stats = apply(variables, x, False)
    dense = variables["params"]["Dense_0"]
    pre = np.asarray(x).reshape(16, -1) @ np.asarray(dense["kernel"]).T + np.asarray(dense["bias"])
    np.testing.assert_allclose(train_stats["BatchNorm_0"]["mean"], (1 - m) * pre.mean(0), rtol=1e-4, atol=1e-6)
    before = variables["batch_stats"]["BatchNorm_0"]["mean"]
    assert np.array_equal(eval_stats["BatchNorm_0"]["mean"], before)


def test_model_dropout_rate_is_vmappable():
    """jit(vmap) over per-member rates: each member's logits are its own model's alone; an array rate 0
    gives the evaluation output, other rates differ."""
    variables = jax.jit(partial(models.init, models.MLP(hidden=(64, 32))), static_argnums=1)(
        jax.random.key(0), SHAPE)
    x = jax.random.uniform(jax.random.key(1), (4, *SHAPE))
    key = jax.random.key(5)

    @jax.jit
    def logits(rate):
        return models.apply(models.MLP(hidden=(64, 32), dropout=rate), variables, x, train=True, dropout_key=key)[0]

    rates = jnp.array([0.0, 0.5, 0.9], jnp.float32)
    out = np.asarray(jax.jit(jax.vmap(logits))(rates))
    for k, rate in enumerate(rates):
        np.testing.assert_allclose(out[k], np.asarray(logits(rate)), rtol=1e-6, atol=1e-6)
    plain = models.apply(models.MLP(hidden=(64, 32)), variables, x)[0]
    np.testing.assert_allclose(out[0], np.asarray(plain), rtol=1e-6, atol=1e-6)
    assert not np.allclose(out[1], out[0]) and not np.allclose(out[2], out[1])
