"""Flax modules (an MLP and a small CNN) whose dropout rate is an array argument.

Flax's own ``nn.Dropout`` branches on ``if rate == 0`` in Python, which fails when the rate is a traced
value that differs per sweep member, so :func:`dropout` is written here on random draws compared with a
threshold: members that share a key (same seed) share the draws and differ only in the threshold —
common random numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh, "gelu": nn.gelu}


# What a model's dropout is driven by: None (no dropout: evaluation), a key (draws made where they are
# used), or the draws themselves, one uint16 array per dropout site in order (see noise_draws).
Noise = jax.Array | tuple[jax.Array, ...] | None


def dropout_draws(key: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Uniform 16-bit draws (uint16) for one dropout site: two to a 32-bit threefry word (on a CPU the
    draws cost about a tenth of an MLP step, and this halves them)."""
    n = math.prod(shape)
    words = jax.random.bits(key, ((n + 1) // 2,), jnp.uint32)
    return jnp.concatenate([words >> 16, words & 0xFFFF])[:n].reshape(shape).astype(jnp.uint16)


def dropout(x: jax.Array, rate: jax.Array, draws: jax.Array | None) -> jax.Array:
    """Inverted dropout: zero each unit with probability `rate`, scale survivors by 1/(1-rate).

    `rate` may be a traced scalar in [0, 1) (resolved to 2⁻¹⁶); rate 0 is the identity. `draws` are the
    units' uniform 16-bit draws (:func:`dropout_draws`), or a key to make them from; with ``None``
    (evaluation) `x` is returned unchanged.
    """
    if draws is None:
        return x
    if jax.dtypes.issubdtype(draws.dtype, jax.dtypes.prng_key):
        draws = dropout_draws(draws, x.shape)
    rate = jnp.asarray(rate, x.dtype)  # a Python float works too
    keep = draws.astype(jnp.uint32) >= jnp.round(rate * 65536.0).astype(jnp.uint32)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


def _site(noise: Noise, j: int, site: int, shape: Sequence[int]) -> jax.Array | None:
    """The draws of the model's `j`-th dropout site (numbered `site` for its key) from `noise`."""
    if noise is None:
        return None
    if isinstance(noise, (tuple, list)):
        return noise[j]
    return dropout_draws(jax.random.fold_in(noise, site), shape)


def noise_draws(model: nn.Module, key: jax.Array, batch: int) -> tuple[jax.Array, ...]:
    """Every dropout draw of one training step of `model` on `batch` inputs, made ahead of the step.

    The same numbers as passing `key` itself as the model's noise. Members that share a key (a stream)
    can then share one set of draws instead of each making them again.
    """
    return tuple(_site(key, j, site, shape) for j, (site, shape) in enumerate(model.dropout_sites(batch)))


class Dense(nn.Module):
    """``y = x Wᵀ + b`` with the kernel W stored as (features out, features in): ``nn.Dense`` transposed.

    Why not ``nn.Dense`` (kernel (in, out)): XLA's CPU matmul produces a layer's weight gradient as
    (out, in); with an (in, out) kernel every optimizer update then read that gradient transposed, a
    strided walk over the largest array of each step. With the kernel stored like the gradient, Adam's
    update reads it contiguously: the 784-256-128-10 sweep's epoch took ~10 % less on 2 CPU cores. The
    initial values are ``nn.Dense``'s (LeCun normal drawn as (in, out), then transposed), so only the
    layout differs; the parameter module keeps the name ``Dense_<i>``.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        lecun = nn.initializers.lecun_normal()
        kernel = self.param("kernel", lambda key, shape: lecun(key, shape[::-1]).T, (self.features, x.shape[-1]))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ()))) + bias


class MLP(nn.Module):
    """Dense → [BatchNorm] → activation → dropout for each hidden size, then a Dense classifier."""

    hidden: Sequence[int]
    activation: str = "relu"
    batch_norm: bool = False
    num_classes: int = 10

    def dropout_sites(self, batch: int) -> list[tuple[int, tuple[int, ...]]]:
        """(site number, shape) of each dropout, in the order the forward pass applies them."""
        return [(i, (batch, width)) for i, width in enumerate(self.hidden)]

    @nn.compact
    def __call__(self, x, rate, noise: Noise = None, train: bool = False):
        act = ACTIVATIONS[self.activation]
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = Dense(width)(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.99)(x)
            x = dropout(act(x), rate, _site(noise, i, i, x.shape))
        return Dense(self.num_classes)(x)


class Conv3x3(nn.Module):
    """A 3×3 'SAME' convolution computed as one matmul over shifted copies of the input (im2col).

    Same parameters (kernel (3, 3, C, F), bias (F,)) and the same numbers as ``nn.Conv(F, (3, 3))``.
    Hand-written because XLA's CPU convolution is slow here: a training step of the study CNN ran at
    about 114 samples/s with ``nn.Conv`` + ``nn.max_pool`` and 2,800 with this and :func:`max_pool_2x2`
    (the nine slices and the matmul, and their gradients, are operations XLA runs near peak).
    """

    features: int

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        height, width = x.shape[1:3]
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        patches = jnp.concatenate([padded[:, i:i + height, j:j + width, :] for i in range(3) for j in range(3)],
                                  axis=-1)
        return patches @ kernel.reshape(9 * channels, self.features) + bias


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max-pooling with stride 2 on even-sized NHWC maps, as a reshape and a max (see Conv3x3)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class CNN(nn.Module):
    """Two 3×3 convolutions (32 and 64 filters) with max-pooling, a dense layer, dropout, a classifier."""

    hidden: Sequence[int] = (128,)
    activation: str = "relu"
    batch_norm: bool = False
    num_classes: int = 10
    filters: Sequence[int] = (32, 64)

    def dropout_sites(self, batch: int, size: int = 28) -> list[tuple[int, tuple[int, ...]]]:
        """(site number, shape) of each dropout, in the order the forward pass applies them."""
        sites = []
        for i, f in enumerate(self.filters):
            size //= 2
            sites.append((100 + i, (batch, size, size, f)))
        return sites + [(i, (batch, width)) for i, width in enumerate(self.hidden)]

    @nn.compact
    def __call__(self, x, rate, noise: Noise = None, train: bool = False):
        act = ACTIVATIONS[self.activation]
        for i, f in enumerate(self.filters):
            x = Conv3x3(f)(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.99)(x)
            x = max_pool_2x2(act(x))
            x = dropout(x, rate, _site(noise, i, 100 + i, x.shape))
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = act(Dense(width)(x))
            x = dropout(x, rate, _site(noise, len(self.filters) + i, i, x.shape))
        return Dense(self.num_classes)(x)


def make_model(arch: str, hidden: Sequence[int], activation: str = "relu", batch_norm: bool = False) -> nn.Module:
    """The module for an architecture name: ``"mlp"`` or ``"cnn"``."""
    cls = {"mlp": MLP, "cnn": CNN}[arch]
    return cls(hidden=tuple(hidden), activation=activation, batch_norm=batch_norm)


def init(model: nn.Module, key: jax.Array, input_shape: Sequence[int]) -> dict[str, Any]:
    """Initial variables ``{"params": ..., ["batch_stats": ...]}`` for inputs of `input_shape` (no batch)."""
    return dict(model.init(key, jnp.zeros((1, *input_shape), jnp.float32), jnp.float32(0.0)))


def apply(model: nn.Module, variables: dict[str, Any], x: jax.Array, rate: jax.Array,
          noise: Noise, train: bool) -> tuple[jax.Array, dict[str, Any]]:
    """Logits for `x`, and the updated batch statistics (unchanged outside training or without BN).

    `noise` drives dropout: a key, the draws of :func:`noise_draws`, or None for none."""
    stats = variables.get("batch_stats", {})
    if train and stats:
        logits, updates = model.apply(variables, x, rate, noise, train=True, mutable=["batch_stats"])
        return logits, updates["batch_stats"]
    return model.apply(variables, x, rate, noise, train=train), stats
