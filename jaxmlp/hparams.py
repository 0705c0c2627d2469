"""The hyperparameter table: every swept setting declared once (no jax import).

A row (:class:`HParam`) gives a name, a default, bounds, whether its axis is logarithmic, and where the
value goes (``model``, ``optimizer`` or ``loss``). That one declaration yields the ``SweepConfig`` keyword
(``SweepConfig(momentum=[0.5, 0.9])``), the command-line flag (``--momentum 0.5,0.9``), the validation
of every value, the results column and the plot label. Values reach the compiled program as arrays, one
per member: a new value never recompiles.

A user's own hyperparameter needs no row: any other name in ``SweepConfig(hparams={...})`` is passed to
the user's model, optimizer or loss factories in ``hp`` (finite values only). :func:`declare` adds a row
for one (bounds, a label, a flag) the same way the built-in ones are declared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from jaxmlp.errors import UsageError

TARGETS = ("model", "optimizer", "loss")
MAX_SEED = 2**32 - 1   # seeds become uint32 keys


@dataclass(frozen=True)
class HParam:
    """One hyperparameter: how it is named, bounded, drawn on an axis and used."""

    name: str
    default: float
    low: float = -math.inf
    high: float = math.inf
    log: bool = False               # a log axis (plots; random points are drawn log-uniformly)
    target: str = "model"           # model, optimizer or loss: whose factory reads it
    help: str = ""
    label: str = ""                 # plot and table label (default: the name)
    high_open: bool = False         # the bound `high` itself is not allowed (e.g. a dropout rate of 1)
    low_open: bool = False          # nor `low` (e.g. a learning rate of 0)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        return self.label or self.name

    def check(self, value: Any) -> float:
        """The value as a float, or a one-line :class:`UsageError` saying what is allowed."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{self.flag} {value!r} is not a number") from None
        if not math.isfinite(v):
            raise UsageError(f"{self.flag} {value!r} is not finite; give a finite number")
        too_low = v < self.low or (self.low_open and v == self.low)
        too_high = v > self.high or (self.high_open and v == self.high)
        if too_low or too_high:
            raise UsageError(f"{self.flag} {v:g} is outside {self.interval}")
        return v

    @property
    def interval(self) -> str:
        left = "(" if self.low_open or self.low == -math.inf else "["
        right = ")" if self.high_open or self.high == math.inf else "]"
        return f"{left}{self.low:g}, {self.high:g}{right}"


_UNIT = dict(low=0.0, high=1.0, high_open=True)
TABLE: dict[str, HParam] = {h.name: h for h in [
    HParam("dropout", 0.0, **_UNIT, target="model", label="dropout rate",
           help="dropout rate after each hidden layer"),
    HParam("l1", 0.0, low=0.0, log=True, target="loss", label="L1 λ",
           help="L1 penalty strength λ on weight matrices (λ·Σ|w|)"),
    HParam("l2", 0.0, low=0.0, log=True, target="optimizer", label="L2 λ",
           help="L2 penalty strength λ on weight matrices (λ·Σw², Keras's coupled L2)"),
    HParam("lr", 1e-3, low=0.0, low_open=True, log=True, target="optimizer", label="learning rate",
           help="learning rate (the peak of --lr-schedule)"),
    HParam("momentum", 0.0, **_UNIT, target="optimizer", label="momentum",
           help="SGD/RMSprop momentum (the 'momentum' optimizer defaults it to 0.9)"),
    HParam("weight_decay", 1e-4, low=0.0, log=True, target="optimizer", label="weight decay",
           help="AdamW's decoupled weight decay"),
    HParam("b1", 0.9, **_UNIT, target="optimizer", label="β₁", help="Adam/Nadam/AdamW β₁"),
    HParam("b2", 0.999, **_UNIT, target="optimizer", label="β₂", help="Adam/Nadam/AdamW β₂"),
    HParam("label_smoothing", 0.0, **_UNIT, target="loss", label="label smoothing",
           help="label smoothing of the cross-entropy targets"),
    HParam("bn_momentum", 0.99, **_UNIT, target="model", label="batch-norm momentum",
           help="momentum of batch norm's running statistics"),
]}
BUILTIN = tuple(TABLE)


def declare(h: HParam) -> HParam:
    """Add a row for a user's hyperparameter (bounds, label, log axis); returns it."""
    if h.name in TABLE and TABLE[h.name] != h:
        raise UsageError(f"hyperparameter {h.name!r} is already declared; choose another name")
    if h.target not in TARGETS:
        raise UsageError(f"hyperparameter {h.name!r}: target must be one of {', '.join(TARGETS)}")
    TABLE[h.name] = h
    return h


def row(name: str) -> HParam:
    """The declared row of `name`, or an undeclared user row (finite values, no bounds)."""
    return TABLE.get(name) or HParam(name, 0.0, target="model")


def label(name: str) -> str:
    """The label of a results column in plots and tables (swept names and grouping settings)."""
    return TABLE[name].title if name in TABLE else name.replace("_", " ")


def check_name(name: str) -> str:
    if not name.isidentifier():
        raise UsageError(f"hyperparameter name {name!r} is not an identifier; use letters, digits and _")
    return name


def check_values(name: str, values: Iterable[Any]) -> list[float]:
    """Validated values of one hyperparameter (non-empty, finite, within its bounds)."""
    values = list(values)
    if not values:
        raise UsageError(f"{row(name).flag} has no values; give at least one")
    return [row(name).check(v) for v in values]


def check_seed(value: Any, flag: str = "--seed") -> int:
    """A seed as an int in 0..2³²-1 (what a random key holds)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"{flag} {value!r} is not an integer")
    if not 0 <= value <= MAX_SEED:
        raise UsageError(f"{flag} {value} is outside 0..{MAX_SEED}")
    return value
