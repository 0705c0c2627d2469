"""The model registry: a model is built from a member's hyperparameters inside the traced program.

A sweep's ``model`` is either a user's factory ``hp -> flax module`` (``lambda hp: Net(rate=hp["dropout"])``)
or the name of a registered model. A registered model is ``build(spec, hp)``: :class:`Spec` carries what
shapes the program (hidden sizes, activation, batch norm, class count), ``hp`` the member's values. The
built-in ``mlp`` and ``cnn`` are two such entries and take the same path as a user's model; a user can
:func:`register` one by name too (so the command line can train it and a new process can load it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmlp.errors import UsageError
from jaxmlp.nn import ACTIVATIONS, BatchNorm, Conv3x3, Dense, Dropout, max_pool_2x2


@dataclass(frozen=True)
class Spec:
    """The static settings a registered model is built from (those that split a sweep into groups)."""

    hidden: tuple[int, ...] = (256, 128)
    activation: str = "relu"
    batch_norm: bool = False
    num_classes: int = 10


Builder = Callable[[Spec, Mapping[str, Any]], nn.Module]
REGISTRY: dict[str, Builder] = {}


def register(name: str, build: Builder) -> Builder:
    """Register `build(spec, hp) -> module` under `name` (for ``--model NAME`` and ``SweepConfig(model=NAME)``)."""
    REGISTRY[name] = build
    return build


def check_name(name: str) -> str:
    if name not in REGISTRY:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(REGISTRY)} "
                         "(or pass a factory hp -> flax module from Python)")
    return name


@dataclass(frozen=True)
class Factory:
    """``hp -> module`` for a group: a registered name (or a user's factory) with the group's spec. Equal
    groups give equal factories, so compiled programs are reused across sweeps in one process."""

    model: Any          # a registered name or a user's factory hp -> module
    spec: Spec

    def __call__(self, hp: Mapping[str, Any]) -> nn.Module:
        return build(self.model, self.spec, hp)


def build(model: str | Callable[[Mapping[str, Any]], nn.Module], spec: Spec, hp: Mapping[str, Any]) -> nn.Module:
    """The module of one member: a user's factory called with `hp`, or a registered model."""
    if callable(model):
        return model(hp)
    return REGISTRY[check_name(model)](spec, hp)


def _rate(hp: Mapping[str, Any]) -> Any:
    return hp["dropout"]


class MLP(nn.Module):
    """Dense → [BatchNorm] → activation → dropout for each hidden size, then a Dense classifier."""

    hidden: Sequence[int]
    activation: str = "relu"
    batch_norm: bool = False
    num_classes: int = 10
    dropout: Any = 0.0
    bn_momentum: Any = 0.99

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = Dense(width)(x)
            if self.batch_norm:
                x = BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(x)
            x = Dropout(self.dropout)(act(x), deterministic=not train)
        return Dense(self.num_classes)(x)


class CNN(nn.Module):
    """Two 3×3 convolutions (32 and 64 filters) with max-pooling and dropout, dense layers, a classifier."""

    hidden: Sequence[int] = (128,)
    activation: str = "relu"
    batch_norm: bool = False
    num_classes: int = 10
    dropout: Any = 0.0
    bn_momentum: Any = 0.99
    filters: Sequence[int] = (32, 64)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        if x.ndim == 3:          # (N, H, W) images: one channel
            x = x[..., None]
        for f in self.filters:
            x = Conv3x3(f)(x)
            if self.batch_norm:
                x = BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(x)
            x = Dropout(self.dropout)(max_pool_2x2(act(x)), deterministic=not train)
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = Dropout(self.dropout)(act(Dense(width)(x)), deterministic=not train)
        return Dense(self.num_classes)(x)


def _builtin(cls: type) -> Builder:
    def build(spec: Spec, hp: Mapping[str, Any]) -> nn.Module:
        return cls(hidden=tuple(spec.hidden), activation=spec.activation, batch_norm=spec.batch_norm,
                   num_classes=spec.num_classes, dropout=_rate(hp),
                   bn_momentum=hp["bn_momentum"] if spec.batch_norm else 0.99)
    build.__doc__ = f"The built-in {cls.__name__} of a spec, with the member's dropout (and BN momentum)."
    return build


register("mlp", _builtin(MLP))
register("cnn", _builtin(CNN))


def init(model: nn.Module, key: jax.Array, input_shape: Sequence[int], dtype: Any = jnp.float32) -> dict[str, Any]:
    """Initial variables ``{"params": ..., ["batch_stats": ...]}`` for inputs of `input_shape` (no batch)."""
    return dict(model.init({"params": key}, jnp.zeros((1, *input_shape), dtype), train=False))


def apply(model: nn.Module, variables: dict[str, Any], x: jax.Array, train: bool = False,
          dropout_key: jax.Array | None = None, draws: Any = None) -> tuple[jax.Array, dict[str, Any]]:
    """Logits for `x`, and the updated batch statistics (unchanged outside training or without BN).

    Training draws dropout from `dropout_key`, or uses `draws` made ahead (:func:`jaxmlp.nn.draws_of_step`)."""
    stats = variables.get("batch_stats", {})
    if not train:
        return model.apply(variables, x, train=False), stats
    if draws:
        variables = {**variables, "dropout_draws": draws}
    rngs = {"dropout": dropout_key} if dropout_key is not None else {}
    logits, updates = model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
    return logits, updates.get("batch_stats", stats)


def n_params(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Parameter count of `model` from ``jax.eval_shape`` of its init (nothing is computed)."""
    shapes = jax.eval_shape(lambda: init(model, jax.random.key(0), input_shape))
    return sum(a.size for a in jax.tree.leaves(shapes["params"]))
