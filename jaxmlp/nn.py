"""What a user's Flax module needs to be swept: dropout whose rate may be a traced array, batch norm,
and the fast dense and convolution layers of the built-in models.

A model for :func:`jaxmlp.sweep` is a ``flax.linen.Module`` called as ``model(x, train: bool)`` that
returns logits. Its fields may be traced arrays (a member's hyperparameters): build it inside a factory
``lambda hp: Net(dropout=hp["dropout"])``.

- :class:`Dropout`: Flax's own ``nn.Dropout`` branches on ``if rate == 0`` in Python, which fails on a
  traced rate. This one compares 16-bit uniform draws with a threshold: members that share a random
  stream (same seed) share the draws and differ only in the threshold (common random numbers).
- :class:`BatchNorm` is Flax's: under the sweep's ``vmap`` each member keeps its own batch statistics
  (they are part of its variables), and its ``momentum`` may be traced.
- Draw sharing: when the members of a stream are walked in several blocks, each block would make the
  stream's dropout draws again. :func:`draws_of_step` makes one training step's draws ahead of time (the
  same numbers, by construction: the same key and module paths), to be passed back with
  :data:`DRAWS` so that every member of the stream reuses them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

BatchNorm = nn.BatchNorm
DRAWS = "dropout_draws"   # the variable collection that carries ahead-of-time dropout draws


def uniform16(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform 16-bit draws (uint16): two to a 32-bit threefry word (on a CPU the draws cost about a tenth
    of an MLP step, and this halves them)."""
    n = math.prod(shape)
    words = jax.random.bits(key, ((n + 1) // 2,), jnp.uint32)
    return jnp.concatenate([words >> 16, words & 0xFFFF])[:n].reshape(shape).astype(jnp.uint16)


def dropout(x: jax.Array, rate: Any, draws: jax.Array) -> jax.Array:
    """Inverted dropout with given uint16 `draws`: zero a unit with probability `rate` (resolved to 2⁻¹⁶),
    scale the survivors by 1/(1-rate); rate 0 is the identity."""
    rate = jnp.asarray(rate, x.dtype)
    keep = draws.astype(jnp.uint32) >= jnp.round(rate * 65536.0).astype(jnp.uint32)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


class Dropout(nn.Module):
    """Dropout whose `rate` may be a traced array in [0, 1). A Python ``0`` (or ``0.0``) rate is left out
    of the program entirely. Draws come from the ``"dropout"`` RNG stream (``make_rng``)."""

    rate: Any

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or (isinstance(self.rate, (int, float)) and self.rate == 0):
            return x
        if self.has_variable(DRAWS, "draws"):          # shared draws made ahead (draws_of_step)
            draws = self.get_variable(DRAWS, "draws")
        else:
            draws = uniform16(self.make_rng("dropout"), x.shape)
            if self.is_mutable_collection(DRAWS):
                self.put_variable(DRAWS, "draws", draws)
        return dropout(x, self.rate, draws)


def draws_of_step(model: nn.Module, variables: dict[str, Any], x: jax.Array, key: jax.Array) -> Any:
    """The dropout draws of one training step of `model` on inputs shaped like `x` with dropout key
    `key`, as a :data:`DRAWS` collection (empty when the model draws none). Only the draws are kept:
    the rest of the forward pass is dead code that XLA removes."""
    _, cols = model.apply(variables, x, train=True, rngs={"dropout": key}, mutable=[DRAWS, "batch_stats"])
    return cols.get(DRAWS, {})


class Dense(nn.Module):
    """``y = x Wᵀ + b`` with the kernel W stored as (features out, features in): ``nn.Dense`` transposed.

    Why not ``nn.Dense`` (kernel (in, out)): XLA's CPU matmul produces a layer's weight gradient as
    (out, in); with an (in, out) kernel every optimizer update then read that gradient transposed, a
    strided walk over the largest array of each step. With the kernel stored like the gradient, Adam's
    update reads it contiguously: the 784-256-128-10 sweep's epoch took ~10 % less on 2 CPU cores. The
    initial values are ``nn.Dense``'s (LeCun normal drawn as (in, out), then transposed).
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        lecun = nn.initializers.lecun_normal()
        kernel = self.param("kernel", lambda key, shape: lecun(key, shape[::-1]).T, (self.features, x.shape[-1]))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ()))) + bias


class Conv3x3(nn.Module):
    """A 3×3 'SAME' convolution computed as one matmul over shifted copies of the input (im2col).

    Same parameters (kernel (3, 3, C, F), bias (F,)) and the same numbers as ``nn.Conv(F, (3, 3))``.
    Hand-written because XLA's CPU convolution is slow here: a training step of the study CNN ran at
    about 114 samples/s with ``nn.Conv`` + ``nn.max_pool`` and 2,800 with this and :func:`max_pool_2x2`.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        height, width = x.shape[1:3]
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        patches = jnp.concatenate([padded[:, i:i + height, j:j + width, :] for i in range(3) for j in range(3)],
                                  axis=-1)
        return patches @ kernel.reshape(9 * channels, self.features) + bias


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max-pooling with stride 2 (odd sizes drop the last row/column), as a reshape and a max."""
    b, h, w, c = x.shape
    x = x[:, :h // 2 * 2, :w // 2 * 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh, "gelu": nn.gelu}
