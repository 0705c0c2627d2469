"""What a sweep is: the settings, their validation, value specs, and the expansion into groups of members.

A sweep is the product of its lists. Settings that change shapes or the program (dataset, architecture,
hidden sizes, activation, batch norm, optimizer, batch size) split it into **groups**, run one after
another. Inside a group, members are a grid of **streams** (seed × fold: what changes random numbers and
data) times **hyperparameter combinations** (dropout × l1 × l2 × lr: arrays, vmapped).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxmlp import data, optim
from jaxmlp.errors import UsageError
from jaxmlp.models import ACTIVATIONS

SWEPT = ("dropout", "l1", "l2", "lr", "seed")   # flags that take a value spec and become member axes
GROUPED = ("dataset", "arch", "hidden", "activation", "batch_norm", "optimizer", "batch_size")


@dataclass
class SweepConfig:
    """All settings of a sweep (a single run is a sweep of one member). Lists make a grid."""

    dataset: list[str] = field(default_factory=lambda: ["fashion_mnist"])
    arch: list[str] = field(default_factory=lambda: ["mlp"])
    hidden: list[tuple[int, ...]] = field(default_factory=lambda: [(256, 128)])
    activation: list[str] = field(default_factory=lambda: ["relu"])
    batch_norm: list[bool] = field(default_factory=lambda: [False])
    optimizer: list[str] = field(default_factory=lambda: ["adam"])
    batch_size: list[int] = field(default_factory=lambda: [32])   # Keras's default
    dropout: list[float] = field(default_factory=lambda: [0.0])
    l1: list[float] = field(default_factory=lambda: [0.0])
    l2: list[float] = field(default_factory=lambda: [0.0])
    lr: list[float] = field(default_factory=lambda: [1e-3])
    seed: list[int] = field(default_factory=lambda: [0])
    folds: int = 0                 # 0: a held-out validation split; K >= 2: K-fold cross-validation
    epochs: int = 10
    patience: int = 0              # 0: no early stopping
    lr_schedule: str = "anneal"    # anneal (constant, then to 0 over the last 30 %), cosine or constant
    val_fraction: float = 0.1
    train_fraction: float = 1.0
    data_seed: int = 0             # fixes the subset, the validation split and the folds
    data_dir: str | None = None
    chunk_size: int | None = None  # members per compiled chunk; None: chosen from a memory estimate
    devices: int | None = None     # local devices to shard members over; None: all
    member_block: int | None = None  # members vmapped together per stream; None: chosen per device

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = [list(h) for h in self.hidden]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepConfig":
        d = dict(d)
        d["hidden"] = [tuple(h) for h in d.get("hidden", [(256, 128)])]
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}})

    # ---- validation --------------------------------------------------------------------------------
    def validate(self) -> "SweepConfig":
        """Raise :class:`UsageError` on the first setting that cannot work; return self."""
        for name in GROUPED + SWEPT:
            if len(getattr(self, name)) == 0:
                raise UsageError(f"--{_flag(name)} has no values; give at least one")
        for d in self.dataset:
            data.check_name(d)
        for a in self.arch:
            if a not in ("mlp", "cnn"):
                raise UsageError(f"unknown architecture {a!r}; choose mlp or cnn")
        for h in self.hidden:
            if any(w < 1 for w in h):
                raise UsageError(f"--hidden sizes must be positive integers, got {','.join(map(str, h))}")
        for a in self.activation:
            if a not in ACTIVATIONS:
                raise UsageError(f"unknown activation {a!r}; choose one of: {', '.join(ACTIVATIONS)}")
        for o in self.optimizer:
            optim.check_name(o)
        for b in self.batch_size:
            if b < 1:
                raise UsageError(f"--batch-size must be at least 1, got {b}")
        for r in self.dropout:
            if not 0.0 <= r < 1.0:
                raise UsageError(f"--dropout {r} is outside [0, 1); a rate of 1 would drop every unit")
        for name in ("l1", "l2"):
            for v in getattr(self, name):
                if not v >= 0.0:
                    raise UsageError(f"--{name} must be >= 0 (a penalty strength), got {v}")
        for v in self.lr:
            if not v > 0.0:
                raise UsageError(f"--lr must be > 0, got {v}")
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        if self.lr_schedule not in optim.SCHEDULES:
            raise UsageError(f"unknown --lr-schedule {self.lr_schedule!r}; choose one of: {', '.join(optim.SCHEDULES)}")
        if self.patience < 0:
            raise UsageError(f"--patience must be >= 0 (0 turns early stopping off), got {self.patience}")
        if self.folds == 1 or self.folds < 0:
            raise UsageError(f"--folds must be at least 2 (or 0 for a plain validation split), got {self.folds}")
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(f"--val-fraction must lie in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise UsageError(f"--train-fraction must lie in (0, 1], got {self.train_fraction}")
        if self.member_block is not None and self.member_block < 1:
            raise UsageError(f"--member-block must be at least 1, got {self.member_block}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise UsageError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        return self

    # ---- expansion ---------------------------------------------------------------------------------
    def groups(self) -> list["Group"]:
        """The groups of this sweep, in order, each with its member grid."""
        out, first = [], 0
        for values in itertools.product(*(getattr(self, n) for n in GROUPED)):
            g = Group(dict(zip(GROUPED, values)), self, first)
            out.append(g)
            first += g.size
        return out

    @property
    def size(self) -> int:
        return sum(g.size for g in self.groups())

    def swept(self) -> list[str]:
        """Names of the settings that take more than one value (the sweep's axes)."""
        axes = [n for n in GROUPED + SWEPT if len(getattr(self, n)) > 1]
        return axes + (["fold"] if self.folds else [])


@dataclass
class Group:
    """One compiled program's worth of members: fixed static settings, a (streams × hparams) grid."""

    static: dict[str, Any]
    config: SweepConfig
    first_index: int

    @property
    def streams(self) -> list[tuple[int, int]]:
        """(seed, fold) of each stream; fold is 0 without cross-validation."""
        folds = range(self.config.folds) if self.config.folds else [0]
        return [(s, f) for s in self.config.seed for f in folds]

    @property
    def hparams(self) -> list[dict[str, float]]:
        c = self.config
        return [dict(dropout=d, l1=a, l2=b, lr=r) for d, a, b, r in itertools.product(c.dropout, c.l1, c.l2, c.lr)]

    @property
    def size(self) -> int:
        return len(self.streams) * len(self.hparams)

    def member_hparams(self) -> list[dict[str, Any]]:
        """Every member's full settings, in member order (stream-major)."""
        out = []
        for seed, fold in self.streams:
            for hp in self.hparams:
                m = {**self.static, **hp, "seed": seed}
                m["hidden"] = ",".join(map(str, m["hidden"]))
                if self.config.folds:
                    m["fold"] = fold
                out.append(m)
        return out


# ---- value specs ----------------------------------------------------------------------------------

def _flag(name: str) -> str:
    return name.replace("_", "-")


def parse_values(text: str, name: str, kind: type = float) -> list:
    """Parse a value spec: a list ``a,b,c``, a linear range ``start:stop:num`` or ``start:stop:num:log``."""
    flag = f"--{_flag(name)}"
    text = text.strip()
    if not text:
        raise UsageError(f"{flag} is empty; give a value, a list a,b,c or a range start:stop:num[:log]")
    try:
        if ":" not in text:
            return [kind(v) for v in text.split(",")]
        parts = text.split(":")
        log = len(parts) == 4 and parts[3] == "log"
        if len(parts) not in (3, 4) or (len(parts) == 4 and not log):
            raise UsageError(f"{flag} {text!r}: a range is start:stop:num or start:stop:num:log")
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except UsageError:  # a UsageError is a ValueError: keep its own message
        raise
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a number, a list a,b,c or a range start:stop:num[:log]") from None
    if num < 1:
        raise UsageError(f"{flag} {text!r}: a range needs num >= 1, got {num}")
    if log:
        if start <= 0 or stop <= 0:
            raise UsageError(f"{flag} {text!r}: a log range needs positive bounds")
        values = np.geomspace(start, stop, num)
    else:
        values = np.linspace(start, stop, num)
    if kind is int:
        ints = [int(round(v)) for v in values]
        if len(set(ints)) != len(ints):
            raise UsageError(f"{flag} {text!r} gives repeated integers; use fewer values or a list")
        return ints
    # Round away float noise (0.30000000000000004) so the values read back exactly from results files.
    return [float(f"{v:.10g}") for v in values]


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"256,128"`` -> ``(256, 128)``."""
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--hidden {text!r} is malformed; give layer widths like 256,128") from None
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"--hidden {text!r} is malformed; give positive layer widths like 256,128")
    return sizes


def ceil_to(n: int, k: int) -> int:
    return int(math.ceil(n / k) * k)
