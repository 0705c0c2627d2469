"""What a sweep is: its settings, their validation, value specs, and the expansion into groups of members.

A sweep is the product of its lists (or, with ``points``, an explicit list of hyperparameter points).
Settings that change shapes or the program (dataset, model, hidden sizes, activation, batch norm,
optimizer, batch size) split it into **groups**, run one after another. Inside a group, members are a
grid of **streams** (seed × fold: what changes random numbers and data) times **hyperparameter points**
(arrays, vmapped). Hyperparameters come from the table in :mod:`jaxmlp.hparams`; any other name is a
user's own, read by the user's factories. This module imports no jax.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from jaxmlp import hparams as hp_table
from jaxmlp.errors import UsageError

GROUPED = ("dataset", "model", "hidden", "activation", "batch_norm", "optimizer", "batch_size")
BUILTIN_MODEL_ONLY = ("hidden", "activation", "batch_norm")   # settings of the registered models
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")
MAX_EPOCHS = 100_000


@dataclass(init=False)
class SweepConfig:
    """All settings of a sweep (a single run is a sweep of one member). Lists make a grid.

    Hyperparameters are keywords too: ``SweepConfig(dropout=[0.1, 0.3], momentum=[0.9])`` for the table's
    names (:mod:`jaxmlp.hparams`), ``hparams={"width": [...]}`` for any name (a user's own factory reads it
    as ``hp["width"]``). ``model`` and ``optimizer`` take names or factories ``hp -> module`` /
    ``hp -> optax transformation``; ``dataset`` takes names, ``.npz`` paths or ``jaxmlp.data.arrays(...)``.
    ``points`` replaces the grid of hyperparameter lists by an explicit list of points (dicts).
    """

    dataset: list[Any] = field(default_factory=lambda: ["fashion_mnist"])
    model: list[Any] = field(default_factory=lambda: ["mlp"])
    hidden: list[tuple[int, ...]] = field(default_factory=lambda: [(256, 128)])
    activation: list[str] = field(default_factory=lambda: ["relu"])
    batch_norm: list[bool] = field(default_factory=lambda: [False])
    optimizer: list[Any] = field(default_factory=lambda: ["adam"])
    batch_size: list[int] = field(default_factory=lambda: [32])   # Keras's default
    hparams: dict[str, list[float]] = field(default_factory=dict)
    points: list[dict[str, float]] | None = None
    seed: list[int] = field(default_factory=lambda: [0])
    loss: Callable | None = None   # None: cross-entropy (label smoothing, L1); else (logits, labels, hp) -> per-sample
    folds: int = 0                 # 0: a held-out validation split; K >= 2: K-fold cross-validation
    epochs: int = 10
    patience: int = 0              # 0: no early stopping
    lr_schedule: str = "anneal"    # anneal (constant, then to 0 over the last 30 %), cosine or constant
    val_fraction: float = 0.1
    train_fraction: float = 1.0
    data_seed: int = 0             # fixes the subset, the validation split and the folds
    data_dir: str | None = None
    chunk_size: int | None = None  # members per compiled chunk; None: chosen from a memory estimate
    devices: int | None = None     # devices to shard members over; None: all
    member_block: int | None = None  # members vmapped together per stream; None: chosen per device

    def __init__(self, **kwargs: Any) -> None:
        given = dict(kwargs.pop("hparams", None) or {})
        if "arch" in kwargs:                       # the earlier name of `model`
            kwargs["model"] = kwargs.pop("arch")
        names = {f.name for f in dataclasses.fields(self)}
        for key in list(kwargs):
            if key in hp_table.TABLE and key not in names:
                given[key] = kwargs.pop(key)
            elif key not in names:
                raise UsageError(f"SweepConfig has no setting {key!r}; a user hyperparameter goes in "
                                 f"hparams={{{key!r}: [...]}}")
        for f in dataclasses.fields(self):
            value = kwargs[f.name] if f.name in kwargs else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            setattr(self, f.name, value)
        self.hparams = {k: list(v) if isinstance(v, (list, tuple, range, np.ndarray)) else [v]
                        for k, v in given.items()}
        for name in GROUPED + ("seed",):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple, range)):
                setattr(self, name, [v])                # one value for a list setting
            else:
                setattr(self, name, list(v))
        self.hidden = [tuple(h) for h in self.hidden]

    def __getattr__(self, name: str) -> list[float]:
        """``config.dropout``: a table hyperparameter's values (given, or its default)."""
        if name in hp_table.TABLE and "hparams" in self.__dict__:
            return self.hparams.get(name, [hp_table.TABLE[name].default])
        raise AttributeError(name)

    # ---- records -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (factories and arrays by name: see :func:`describe`)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["hidden"] = [list(h) for h in self.hidden]
        for name in ("dataset", "model", "optimizer"):
            d[name] = [describe(v) for v in d[name]]
        d["loss"] = describe(self.loss) if self.loss is not None else None
        d["hparams"] = {k: list(v) for k, v in self.hparams.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepConfig":
        d = dict(d)
        d.pop("loss", None)
        if "arch" in d:
            d["model"] = d.pop("arch")
        d["hidden"] = [tuple(h) for h in d.get("hidden", [(256, 128)])]
        names = {f.name for f in dataclasses.fields(cls)} | set(hp_table.TABLE)
        return cls(**{k: v for k, v in d.items() if k in names})

    # ---- validation --------------------------------------------------------------------------------
    def validate(self) -> "SweepConfig":
        """Raise :class:`UsageError` on the first setting that cannot work; return self."""
        from jaxmlp import data, models, optim   # data, models and optim import jax: loaded only here

        for name in GROUPED + ("seed",):
            if len(getattr(self, name)) == 0:
                raise UsageError(f"--{_flag(name)} has no values; give at least one")
        for d in self.dataset:
            data.check(d)
        for m in self.model:
            if not callable(m):
                models.check_name(m)
        for h in self.hidden:
            if not h or any(not isinstance(w, (int, np.integer)) or w < 1 for w in h):
                raise UsageError(f"--hidden sizes must be positive integers, got {','.join(map(str, h))}")
        for a in self.activation:
            if a not in ACTIVATIONS:
                raise UsageError(f"unknown activation {a!r}; choose one of: {', '.join(ACTIVATIONS)}")
        for o in self.optimizer:
            if not callable(o):
                optim.check_name(o)
        for b in self.batch_size:
            if not 1 <= b <= 1 << 20:
                raise UsageError(f"--batch-size must lie in 1..{1 << 20}, got {b}")
        for name, values in self.hparams.items():
            self.hparams[name] = hp_table.check_values(hp_table.check_name(name), values)
        if self.points is not None:
            self._check_points()
        self.seed = [hp_table.check_seed(s) for s in self.seed]
        hp_table.check_seed(self.data_seed, "--data-seed")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise UsageError(f"--epochs must lie in 1..{MAX_EPOCHS}, got {self.epochs}")
        if self.lr_schedule not in optim.SCHEDULES:
            raise UsageError(f"unknown --lr-schedule {self.lr_schedule!r}; choose one of: {', '.join(optim.SCHEDULES)}")
        if not 0 <= self.patience <= MAX_EPOCHS:
            raise UsageError(f"--patience must be >= 0 (0 turns early stopping off), got {self.patience}")
        if self.folds == 1 or not 0 <= self.folds <= 1000:
            raise UsageError(f"--folds must lie in 2..1000 (or 0 for a plain validation split), got {self.folds}")
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(f"--val-fraction must lie in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise UsageError(f"--train-fraction must lie in (0, 1], got {self.train_fraction}")
        if self.member_block is not None and self.member_block < 1:
            raise UsageError(f"--member-block must be at least 1, got {self.member_block}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise UsageError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        return self

    def _check_points(self) -> None:
        if not self.points:
            raise UsageError("points is empty; give at least one point (a dict of hyperparameter values)")
        names = set(self.points[0])
        for p in self.points:
            if set(p) != names:
                raise UsageError(f"every point must set the same hyperparameters; {sorted(p)} != {sorted(names)}")
        if names & set(self.hparams):
            raise UsageError(f"{', '.join(sorted(names & set(self.hparams)))} given both as a list and in "
                             "points; give each hyperparameter one way")
        self.points = [{k: hp_table.row(k).check(v) for k, v in p.items()} for p in self.points]

    # ---- expansion ---------------------------------------------------------------------------------
    def groups(self) -> list["Group"]:
        """The groups of this sweep, in order, each with its member grid."""
        out, first = [], 0
        lists = [getattr(self, n) for n in GROUPED]
        for values in itertools.product(*lists):
            static = dict(zip(GROUPED, values))
            if callable(static["model"]) and any(
                    static[n] != getattr(self, n)[0] for n in BUILTIN_MODEL_ONLY):
                continue   # a user's model ignores the built-in models' settings: one group, not several
            g = Group(static, self, first)
            out.append(g)
            first += g.size
        return out

    @property
    def size(self) -> int:
        return sum(g.size for g in self.groups())

    def hp_names(self) -> list[str]:
        """The hyperparameters given, table names first (in table order), then the user's own."""
        given = set(self.hparams) | (set(self.points[0]) if self.points else set())
        return [n for n in hp_table.TABLE if n in given] + sorted(given - set(hp_table.TABLE))

    def swept(self) -> list[str]:
        """Names of the settings that take more than one value (the sweep's axes)."""
        axes = [n for n in GROUPED if len({describe(v) for v in getattr(self, n)}) > 1]
        points = self.points or []
        axes += [n for n in self.hp_names()
                 if len(set(self.hparams.get(n, [])) | {p[n] for p in points if n in p}) > 1]
        axes += ["seed"] if len(self.seed) > 1 else []
        return axes + (["fold"] if self.folds else [])


@dataclass
class Group:
    """One compiled program's worth of members: fixed static settings, a (streams × points) grid."""

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
        """The given hyperparameters of each point, in order (the grid of the lists, or the points)."""
        c = self.config
        if c.points is not None:
            grid = [dict(zip(c.hparams, v)) for v in itertools.product(*c.hparams.values())]
            return [{**g, **p} for p in c.points for g in grid]
        names = c.hp_names()
        return [dict(zip(names, v)) for v in itertools.product(*(c.hparams[n] for n in names))]

    def defaults(self) -> dict[str, float]:
        """Every table hyperparameter's value where it is not given: the table's default, or the
        optimizer's own (the 'momentum' optimizer's momentum is 0.9)."""
        from jaxmlp import optim

        out = {n: h.default for n, h in hp_table.TABLE.items()}
        if not callable(self.static["optimizer"]):
            out.update(optim.OPTIMIZERS[self.static["optimizer"]].defaults)
        return out

    @property
    def size(self) -> int:
        return len(self.streams) * len(self.hparams)

    def label(self) -> dict[str, Any]:
        """The group's static settings as recorded in results (factories and arrays by name)."""
        st = {k: describe(v) for k, v in self.static.items()}
        st["hidden"] = ",".join(map(str, self.static["hidden"]))
        if callable(self.static["model"]):
            for n in BUILTIN_MODEL_ONLY:
                st.pop(n)
        return st

    def name(self) -> str:
        """A short name for messages: the model and the optimizer, and the settings that split groups."""
        label = self.label()
        keys = ["model", "optimizer"] + [k for k in GROUPED if k not in ("model", "optimizer") and k in label
                                         and len({describe(v) for v in getattr(self.config, k)}) > 1]
        return "(" + ", ".join(f"{k} {label[k]}" for k in keys) + ")"

    def member_hparams(self, recorded: list[str] | None = None) -> list[dict[str, Any]]:
        """Every member's settings, in member order (stream-major): the group's label, the given
        hyperparameters and those in `recorded` (the defaults the program reads), the seed and fold."""
        defaults = self.defaults()
        out = []
        for seed, fold in self.streams:
            for hp in self.hparams:
                values = {**{n: defaults[n] for n in (recorded or [])}, **hp}
                order = [n for n in hp_table.TABLE if n in values] + [n for n in values if n not in hp_table.TABLE]
                m = {**self.label(), **{n: values[n] for n in order}, "seed": seed}
                if self.config.folds:
                    m["fold"] = fold
                out.append(m)
        return out


def describe(value: Any) -> Any:
    """How a setting is recorded: names as they are; a factory as ``user:<module>.<name>``; arrays by name."""
    if callable(value):
        name = getattr(value, "__qualname__", type(value).__name__)
        return f"user:{getattr(value, '__module__', '?')}.{name}"
    if hasattr(value, "fingerprint") and hasattr(value, "name"):
        return f"{value.name}"
    return value


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
            values = [kind(v) for v in text.split(",")]
            _finite(values, flag, text)
            return values
        parts = text.split(":")
        log = len(parts) == 4 and parts[3] == "log"
        if len(parts) not in (3, 4) or (len(parts) == 4 and not log):
            raise UsageError(f"{flag} {text!r}: a range is start:stop:num or start:stop:num:log")
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except UsageError:  # a UsageError is a ValueError: keep its own message
        raise
    except (ValueError, OverflowError):
        raise UsageError(f"{flag} {text!r} is not a number, a list a,b,c or a range start:stop:num[:log]") from None
    _finite([start, stop], flag, text)
    if not 1 <= num <= 100_000:
        raise UsageError(f"{flag} {text!r}: a range needs 1 <= num <= 100000, got {num}")
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


def _finite(values: list, flag: str, text: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{flag} {text!r} holds a value that is not finite; give finite numbers")


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"256,128"`` -> ``(256, 128)``."""
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--hidden {text!r} is malformed; give layer widths like 256,128") from None
    if not sizes or any(not 1 <= s <= 1 << 20 for s in sizes):
        raise UsageError(f"--hidden {text!r} is malformed; give layer widths in 1..{1 << 20} like 256,128")
    return sizes


def ceil_to(n: int, k: int) -> int:
    return int(math.ceil(n / k) * k)
