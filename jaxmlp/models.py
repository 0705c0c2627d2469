"""Flax modules (an MLP and a small CNN) whose dropout rate is an array argument.

Flax's own ``nn.Dropout`` branches on ``if rate == 0`` in Python, which fails when the rate is a traced
value that differs per sweep member, so :func:`dropout` is written here on random draws compared with a
threshold: members that share a key (same seed) share the draws and differ only in the threshold —
common random numbers.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh, "gelu": nn.gelu}


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zero each unit with probability `rate`, scale survivors by 1/(1-rate).

    `rate` may be a traced scalar in [0, 1) (resolved to 2⁻¹⁶); rate 0 is the identity. With ``key=None``
    (evaluation) `x` is returned unchanged. Each unit's draw is 16 bits, two to a 32-bit threefry word:
    on a CPU the draws cost about a tenth of an MLP step, and this halves them.
    """
    if key is None:
        return x
    rate = jnp.asarray(rate, x.dtype)  # a Python float works too
    n = x.size
    words = jax.random.bits(key, ((n + 1) // 2,), jnp.uint32)
    draws = jnp.concatenate([words >> 16, words & 0xFFFF])[:n].reshape(x.shape)
    keep = draws >= jnp.round(rate * 65536.0).astype(jnp.uint32)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


class MLP(nn.Module):
    """Dense → [BatchNorm] → activation → dropout for each hidden size, then a Dense classifier."""

    hidden: Sequence[int]
    activation: str = "relu"
    batch_norm: bool = False
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, rate, key=None, train: bool = False):
        act = ACTIVATIONS[self.activation]
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width)(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.99)(x)
            x = dropout(act(x), rate, None if key is None else jax.random.fold_in(key, i))
        return nn.Dense(self.num_classes)(x)


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

    @nn.compact
    def __call__(self, x, rate, key=None, train: bool = False):
        act = ACTIVATIONS[self.activation]
        for i, f in enumerate(self.filters):
            x = Conv3x3(f)(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.99)(x)
            x = max_pool_2x2(act(x))
            x = dropout(x, rate, None if key is None else jax.random.fold_in(key, 100 + i))
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = dropout(act(nn.Dense(width)(x)), rate, None if key is None else jax.random.fold_in(key, i))
        return nn.Dense(self.num_classes)(x)


def make_model(arch: str, hidden: Sequence[int], activation: str = "relu", batch_norm: bool = False) -> nn.Module:
    """The module for an architecture name: ``"mlp"`` or ``"cnn"``."""
    cls = {"mlp": MLP, "cnn": CNN}[arch]
    return cls(hidden=tuple(hidden), activation=activation, batch_norm=batch_norm)


def init(model: nn.Module, key: jax.Array, input_shape: Sequence[int]) -> dict[str, Any]:
    """Initial variables ``{"params": ..., ["batch_stats": ...]}`` for inputs of `input_shape` (no batch)."""
    return dict(model.init(key, jnp.zeros((1, *input_shape), jnp.float32), jnp.float32(0.0)))


def apply(model: nn.Module, variables: dict[str, Any], x: jax.Array, rate: jax.Array,
          key: jax.Array | None, train: bool) -> tuple[jax.Array, dict[str, Any]]:
    """Logits for `x`, and the updated batch statistics (unchanged outside training or without BN)."""
    stats = variables.get("batch_stats", {})
    if train and stats:
        logits, updates = model.apply(variables, x, rate, key, train=True, mutable=["batch_stats"])
        return logits, updates["batch_stats"]
    return model.apply(variables, x, rate, key, train=train), stats
