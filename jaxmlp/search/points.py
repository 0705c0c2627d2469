"""Random and quasi-random points over hyperparameter ranges: N points train as one N-member job.

A space maps each name to what its values may be:

* a continuous range ``(low, high)`` or :class:`Range` (``Range(1e-4, 1e-1)``),
* an integer range :class:`IntRange` (``IntRange(16, 256, log=True)``): every integer of ``low..high``,
* a :class:`Choice` among listed numbers (``Choice([0.0, 0.2, 0.5])``), each equally likely,
* or the same as a compact string (what the command line gives): ``"low:high"``, ``"low:high:log"``,
  ``"low:high:lin"``, ``"low:high:int"``, ``"low:high:int:log"``, ``"choice:a,b,c"`` (:func:`parse_spec`).

The table row of a name (:mod:`jaxmlp.hparams`) says whether its axis is logarithmic (``lr``, ``l1``,
``l2``, ``weight_decay``: points spread evenly over the decades) unless the spec says otherwise, and
bounds every value. Each point's coordinate comes from one unit coordinate u in [0, 1), so quasi-random
points from ``scipy.stats.qmc`` (Sobol, Halton), which cover a space more evenly than independent draws
for the same count, stay even over integers and choices too. Values are floats (an integer is recorded
as e.g. ``64.0``): hyperparameters reach the compiled program as float arrays. No jax import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Union

import numpy as np

from jaxmlp import hparams as hp_table
from jaxmlp.errors import UsageError

METHODS = ("random", "sobol", "halton")
SPEC_SYNTAX = "low:high, low:high:log, low:high:lin, low:high:int, low:high:int:log or choice:a,b,c"
_TAGS = ("int", "log", "lin")


@dataclass(frozen=True)
class Range:
    """Every real value of ``[low, high)``; ``log`` None: the table's axis (or ``sample``'s ``log``)."""

    low: float
    high: float
    log: bool | None = None


@dataclass(frozen=True)
class IntRange:
    """Every integer of ``low..high`` (both included). Linear: each equally likely. Log: uniform in
    log over ``[low - 1/2, high + 1/2]``, then rounded, so both ends stay reachable (needs low >= 1).
    ``log`` None: the table's axis (or ``sample``'s ``log``); a name without a row is linear."""

    low: int
    high: int
    log: bool | None = None


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (distinct numbers), each equally likely."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        # A list is the natural way to write it; a tuple keeps the frozen dataclass hashable.
        if isinstance(self.values, (str, bytes)) or not isinstance(self.values, Iterable):
            raise UsageError(f"Choice takes a list of numbers, got {self.values!r}")
        object.__setattr__(self, "values", tuple(self.values))


Spec = Union[tuple[float, float], Range, IntRange, Choice, str]


def sample(space: Mapping[str, Spec], n: int, method: str = "random", seed: int = 0,
           log: Mapping[str, bool] | None = None) -> list[dict[str, float]]:
    """`n` points of `space` ({name: spec}, see the module), drawn by `method` (random, sobol or halton)
    from `seed`. `log` overrides the table's axis of a name whose range does not give its own. Every
    value passes the name's table check; errors are one-line :class:`UsageError`."""
    if method not in METHODS:
        raise UsageError(f"unknown sampler {method!r}; choose one of: {', '.join(METHODS)}")
    if not 1 <= n <= 1_000_000:
        raise UsageError(f"a sample needs 1..1000000 points, got {n}")
    if not space:
        raise UsageError("a sample needs at least one hyperparameter range: --lr 1e-4:1e-1 on the command line, "
                         "{'lr': (1e-4, 1e-1)} from Python")
    names = list(space)
    # Check every spec before drawing: a bad one fails fast, whatever its place.
    specs = [_checked(name, space[name], (log or {}).get(name)) for name in names]
    unit = _unit_points(len(names), n, method, seed)
    points: list[dict[str, float]] = [{} for _ in range(n)]
    for j, (name, spec) in enumerate(zip(names, specs)):
        row = hp_table.row(name)
        for i, v in enumerate(_values(spec, unit[:, j])):
            points[i][name] = row.check(v)
    return points


def parse_spec(text: str, name: str) -> Range | IntRange | Choice:
    """The spec of a compact string (``16:256:int``, ``choice:0,0.2,0.5``, ...; see the module)."""
    flag = hp_table.row(name).flag
    text = text.strip()
    if text.startswith("choice:"):
        body = text[len("choice:"):]
        try:
            return Choice([float(v) for v in body.split(",")] if body.strip() else [])
        except ValueError:
            raise UsageError(f"{flag} {text!r}: a choice is choice:a,b,c with numbers a, b, c") from None
    parts = text.split(":")
    tags = parts[2:]
    if len(parts) < 2 or len(tags) > 2 or any(t not in _TAGS for t in tags) or len(set(tags)) < len(tags) \
            or {"log", "lin"} <= set(tags):
        raise UsageError(f"{flag} {text!r}: under --sample give {SPEC_SYNTAX}")
    axis = True if "log" in tags else False if "lin" in tags else None
    if "int" in tags:
        try:
            low, high = (_integer(v) for v in parts[:2])
        except ValueError:
            raise UsageError(f"{flag} {text!r}: an integer range low:high:int needs integer bounds") from None
        return IntRange(low, high, log=axis)
    try:
        low, high = (float(v) for v in parts[:2])
    except ValueError:
        raise UsageError(f"{flag} {text!r}: under --sample a range is low:high (numbers)") from None
    return Range(low, high, log=axis)


def is_spec(text: str) -> bool:
    """Whether a flag's text under ``--sample`` is a spec to draw from; any other text (a list a,b,c or a
    grid range start:stop:num[:log]) stays a grid, crossed with the drawn points."""
    parts = text.strip().split(":")
    return text.strip().startswith("choice:") or len(parts) == 2 or (2 < len(parts) <= 4 and parts[2] in _TAGS)


def _integer(text: str) -> int:
    v = float(text)
    if not v.is_integer():
        raise ValueError(text)
    return int(v)


def _checked(name: str, spec: Spec, log_override: bool | None) -> Range | IntRange | Choice:
    """The spec as a :class:`Range`, :class:`IntRange` or :class:`Choice` with its axis settled, or a
    one-line UsageError naming the flag."""
    row = hp_table.row(name)
    if isinstance(spec, str):
        spec = parse_spec(spec, name)
    if isinstance(spec, Choice):
        if not spec.values:
            raise UsageError(f"{row.flag} choice is empty; give at least one value")
        values = [row.check(v) for v in spec.values]
        if len(set(values)) != len(values):
            raise UsageError(f"{row.flag} choice {_fmt(values)} repeats a value; give each value once "
                             "(equal chances)")
        return Choice(values)
    if isinstance(spec, IntRange):
        low, high = spec.low, spec.high
        if not all(_is_integral(v) for v in (low, high)):
            raise UsageError(f"{row.flag} integer range {low!r}:{high!r} needs integer bounds")
        low, high = int(low), int(high)
        for v in (low, high):
            row.check(v)
        if low > high:
            raise UsageError(f"{row.flag} integer range {low}:{high} is empty; give low <= high")
        is_log = _axis(spec.log, log_override, row)
        if is_log and low < 1:
            raise UsageError(f"{row.flag} integer range {low}:{high} is on a log axis: give a low bound of at least 1")
        return IntRange(low, high, is_log)
    if isinstance(spec, Range):
        bounds, own = (spec.low, spec.high), spec.log
    else:   # the tuple form (low, high), as before the spec classes
        try:
            bounds = tuple(spec)
        except TypeError:
            bounds = ()
        own = None
        if len(bounds) != 2:
            raise UsageError(f"{row.flag}: a range is (low, high), got {spec!r}; for a choice among values "
                             "use Choice([...])")
    try:
        low, high = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise UsageError(f"{row.flag} range {bounds!r} is not two numbers") from None
    for v in (low, high):
        row.check(v)
    if not low < high:
        raise UsageError(f"{row.flag} range {low:g}:{high:g} is empty; give low < high")
    is_log = _axis(own, log_override, row)
    if is_log and low <= 0:
        raise UsageError(f"{row.flag} range {low:g}:{high:g} is on a log axis: give a positive low bound")
    return Range(low, high, is_log)


def _axis(own: bool | None, override: bool | None, row: hp_table.HParam) -> bool:
    # The spec's own word first, then sample()'s `log`, then the table.
    return bool(own if own is not None else override if override is not None else row.log)


def _is_integral(v: object) -> bool:
    if isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v)) and float(v).is_integer()
    except (TypeError, ValueError):
        return False


def _values(spec: Range | IntRange | Choice, u: np.ndarray) -> list[float]:
    """The values of unit coordinates `u` (in [0, 1)) under a checked spec."""
    if isinstance(spec, Choice):
        # floor(u·k): each value owns an equal stretch of [0, 1), so stratified (Sobol) points balance them.
        index = np.minimum((u * len(spec.values)).astype(np.int64), len(spec.values) - 1)
        return [spec.values[i] for i in index]
    if isinstance(spec, IntRange):
        lo, hi = spec.low, spec.high
        if spec.log:
            # Uniform in log over [low - ½, high + ½], rounded: each integer gets its stretch of the log
            # axis, and the two ends get a half-step outside the range, so both are reachable.
            a, b = math.log(lo - 0.5), math.log(hi + 0.5)
            x = np.floor(np.exp(a + u * (b - a)) + 0.5)
        else:
            x = np.floor(lo + u * (hi - lo + 1))   # equal stretches of [0, 1) per integer
        return [float(v) for v in np.clip(x, lo, hi)]
    low, high = spec.low, spec.high
    values = np.exp(np.log(low) + u * (np.log(high) - np.log(low))) if spec.log else low + u * (high - low)
    # Round away float noise so values read back exactly from results files; stay inside the range
    # (the table's open bounds, e.g. a dropout rate below 1).
    return [min(max(float(f"{v:.10g}"), low), math.nextafter(high, low)) for v in values]


def _fmt(values: Iterable[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _unit_points(d: int, n: int, method: str, seed: int) -> np.ndarray:
    """(n, d) points in [0, 1)."""
    if method == "random":
        return np.random.default_rng(seed).random((n, d))
    from scipy.stats import qmc   # imported here: only quasi-random sampling needs scipy

    engine = qmc.Sobol(d, scramble=True, seed=seed) if method == "sobol" else qmc.Halton(d, scramble=True, seed=seed)
    return engine.random(n)
