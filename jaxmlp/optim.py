"""Optimizers by name, with the learning rate and L2 strength held in the optimizer *state*.

``optax.inject_hyperparams`` stores ``learning_rate`` and ``l2`` as arrays in the state, so each sweep
member carries its own values through ``jax.vmap`` and a new value never recompiles.

Penalties (Keras semantics, on weight matrices only — never biases or batch-norm scales):
- **L2 is an optax transform**: ``add_decayed_weights(2·λ₂)`` placed *before* the optimizer adds the
  gradient of ``λ₂·Σw²`` to the loss gradient, which is exactly the gradient of Keras's L2 loss term
  under every optimizer (it is coupled, not AdamW's decoupled decay).
- **L1 is a loss term** (:func:`l1_penalty`): optax has no L1 transform, and in the loss it is differentiated
  with the rest (subgradient ``λ₁·sign(w)``).
Reported losses are the data (cross-entropy) loss alone, so members with different λ compare directly.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxmlp.errors import UsageError

_BASE: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "adam": lambda lr: optax.adam(lr),
    "nadam": lambda lr: optax.nadam(lr),
    "rmsprop": lambda lr: optax.rmsprop(lr),
    "adamw": lambda lr: optax.adamw(lr, weight_decay=1e-4, mask=weight_matrices),
}
OPTIMIZERS = tuple(_BASE)


def weight_matrices(params: Any) -> Any:
    """A boolean tree: True for weight matrices and convolution kernels (ndim > 1), False elsewhere."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def check_name(name: str) -> str:
    if name not in _BASE:
        raise UsageError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return name


def make_optimizer(name: str, learning_rate: jax.Array | float = 1e-3,
                   l2: jax.Array | float = 0.0) -> optax.GradientTransformation:
    """An optax chain ``L2 term → optimizer`` whose learning rate and λ₂ live in its state.

    The values given here only seed ``init``; ``update`` reads them from the state, so one transform
    built with placeholder values updates every member of a sweep.
    """
    base = _BASE[check_name(name)]

    def chain(learning_rate, l2):
        return optax.chain(optax.add_decayed_weights(2.0 * l2, mask=weight_matrices), base(learning_rate))

    return optax.inject_hyperparams(chain)(learning_rate=learning_rate, l2=l2)


def l1_penalty(params: Any, l1: jax.Array) -> jax.Array:
    """``λ₁ · Σ|w|`` over weight matrices (the L1 loss term)."""
    leaves = [jnp.abs(p).sum() for p in jax.tree.leaves(params) if p.ndim > 1]
    return l1 * sum(leaves)


def l2_penalty(params: Any, l2: jax.Array) -> jax.Array:
    """``λ₂ · Σw²`` over weight matrices: the loss whose gradient the L2 transform adds (for reporting)."""
    leaves = [jnp.square(p).sum() for p in jax.tree.leaves(params) if p.ndim > 1]
    return l2 * sum(leaves)
