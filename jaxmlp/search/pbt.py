"""Population-based training (PBT) inside the compiled program: exploit the best members, explore around them.

Every `every` epochs (Jaderberg et al. 2017, "truncation selection"), the members still training are
ranked by a metric; each of the worst `fraction` takes the whole training state (weights, optimizer
moments, schedule step) of a member drawn from the best `fraction` (*exploit*), then trains on with that
member's hyperparameters changed (*explore*): each name is drawn anew from its range with probability
`resample`, else multiplied by one of the `perturb` factors and kept within its range and the table's
bounds. Hyperparameters reach the program as arrays, so nothing recompiles
(:meth:`jaxmlp.population.Population.exploit`).

Decisions depend on the seed, the epoch and the numbers alone (a numpy Generator seeded from
``(seed, epoch)``; ties in the ranking go to the lower member index), so a killed sweep resumed from its
checkpoint takes them again alike. Each exploit is recorded in ``results.json``'s ``events`` and the
replaced member's status becomes ``"replaced"`` (with ``by`` and ``replaced_at``: its last replacement); from
the events, :func:`schedules` gives every member's hyperparameters epoch by epoch, :func:`lineage` whose
training its final weights descend from, and :func:`jaxmlp.plots.pbt.pbt_schedules` draws both.

Members are ranked within their group (the members sharing model, optimizer, batch size, ...): only a
member of the same compiled program can hand its state over.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from jaxmlp import hparams as hp_table
from jaxmlp.callbacks import Callback
from jaxmlp.config import GROUPED, SweepConfig
from jaxmlp.errors import UsageError
from jaxmlp.search.points import Choice, IntRange, Range, Spec, parse_spec, sample

METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
EVENT = "pbt"   # the "schedule" of PBT's events in results.json


@dataclass(frozen=True)
class Move:
    """One exploit-and-explore step: `member` takes `source`'s state and trains on with `hparams`."""

    member: int
    source: int
    hparams: dict[str, float]      # the member's new values of the explored names
    previous: dict[str, float]     # its values before
    values: tuple[float, float]    # the metric of member and source that decided it


class PBT(Callback):
    """Population-based training as a schedule: pass ``PBT(...)`` in ``jaxmlp.sweep(..., callbacks=[...])``.

    `every`: epochs between two exploit steps (at epochs ``every, 2·every, ...`` below the last).
    `fraction`: the share of the (active) members replaced, and the share they copy from, in (0, 0.5].
    `names`: the hyperparameters explored; each must be an input of the program (not 0 for every member,
    which compiles its term out). `space`: {name: range} as for :func:`jaxmlp.search.sample`, where
    resampled values come from and what perturbed values stay within; None: the range the members
    started in. `perturb`: the factors a value is multiplied by (one drawn per name; on a log axis these
    are steps in log space), `resample`: the probability of drawing a name anew instead.
    `metric`: ``val_accuracy`` (default), ``val_loss``, ``train_accuracy`` or ``train_loss``.

    A replaced member keeps its own stream (seed, data order) and its values of the names not explored.
    With two or more active members in a group, at least one is replaced at each step.
    """

    def __init__(self, every: int = 2, fraction: float = 0.25, names: Sequence[str] = ("lr", "dropout"),
                 space: Mapping[str, Spec] | None = None, perturb: Sequence[float] = (0.8, 1.25),
                 resample: float = 0.25, seed: int = 0, metric: str = "val_accuracy"):
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise UsageError(f"PBT every={every!r} must be a whole number of epochs >= 1")
        if not (isinstance(fraction, (int, float)) and 0 < fraction <= 0.5):
            raise UsageError(f"PBT fraction={fraction!r} must be in (0, 0.5]: the worst share copies the best "
                             "share, and the two must not overlap")
        names = (names,) if isinstance(names, str) else tuple(names)
        if not names or len(set(names)) != len(names):
            raise UsageError(f"PBT names={names!r} must list each hyperparameter to explore once")
        for n in names:
            hp_table.check_name(n)
        perturb = tuple(float(f) for f in perturb)
        if not perturb or not all(math.isfinite(f) and f > 0 for f in perturb):
            raise UsageError(f"PBT perturb={perturb!r} must list positive factors, e.g. (0.8, 1.25)")
        if not (isinstance(resample, (int, float)) and 0 <= resample <= 1):
            raise UsageError(f"PBT resample={resample!r} is a probability: give a number in [0, 1]")
        if metric not in METRICS:
            raise UsageError(f"PBT metric {metric!r} is unknown; choose one of: {', '.join(METRICS)}")
        if space is not None:
            missing = [n for n in names if n not in space]
            if missing:
                raise UsageError(f"PBT space has no range for {', '.join(missing)}; give one for every name "
                                 "explored, or space=None to use the range the members started in")
            sample({n: space[n] for n in names}, 1)   # checks every range (one-line errors)
        self.every, self.fraction, self.names, self.space = int(every), float(fraction), names, space
        self.perturb, self.resample, self.metric = perturb, float(resample), metric
        self.seed = hp_table.check_seed(seed, "PBT seed")

    def on_population(self, population: Any) -> None:
        start = [population.hparams(i) for i in range(population.size)]
        self._check_names(start)
        epoch = population.epoch
        if epoch % self.every or epoch >= population.epochs:
            return
        space = self.space if self.space is not None else starting_space(start, self.names)
        values = population.metric(self.metric)
        moves: list[Move] = []
        active = set(population.active())
        for members in groups(start):
            ranked = [i for i in members if i in active and values[i] is not None and math.isfinite(values[i])]
            current = {i: population.current_hparams(i) for i in ranked}
            moves += self.decide(epoch, ranked, values, current, space)
        if not moves:
            return
        population.exploit([(m.member, m.source) for m in moves], {m.member: m.hparams for m in moves})
        for m in moves:
            population.log({"schedule": EVENT, "member": m.member, "from": m.source, "hparams": m.hparams,
                            "previous": m.previous, "metric": self.metric,
                            "values": {"member": m.values[0], "from": m.values[1]}})
            population.mark([m.member], "replaced", by=m.source, replaced_at=epoch)

    def decide(self, epoch: int, members: Sequence[int], values: Sequence[float | None],
               current: Mapping[int, Mapping[str, float]], space: Mapping[str, Spec | None]) -> list[Move]:
        """The moves of one exploit step among `members` (active members of one group): rank them by
        `values` (best first, ties to the lower index), let each of the worst ``fraction`` (worst first)
        copy one of the best ``fraction`` drawn at random, and explore from that member's `current` values.
        Random draws come from ``(seed, epoch, first member)`` alone."""
        k = math.floor(self.fraction * len(members) + 1e-9)
        k = max(k, 1) if len(members) >= 2 else 0
        if k == 0:
            return []
        lower = self.metric.endswith("loss")
        ranked = sorted(members, key=lambda i: (values[i] if lower else -values[i], i))
        top, bottom = ranked[:k], ranked[::-1][:k]
        rng = np.random.default_rng([self.seed, epoch, min(members)])
        moves = []
        for dst in bottom:
            src = top[int(rng.integers(k))]
            new = {}
            for n in self.names:
                spec = space.get(n)
                if rng.random() < self.resample and spec is not None:
                    new[n] = sample({n: spec}, 1, seed=int(rng.integers(2**32)))[0][n]
                else:
                    factor = self.perturb[int(rng.integers(len(self.perturb)))]
                    new[n] = perturbed(n, float(current[src][n]), factor, spec)
            moves.append(Move(dst, src, new, {n: float(current[dst][n]) for n in self.names},
                              (float(values[dst]), float(values[src]))))
        return moves

    def _check_names(self, start: list[dict[str, Any]]) -> None:
        for n in self.names:
            if n not in start[0]:
                raise UsageError(f"PBT cannot explore {n!r}: it is not a hyperparameter of this sweep; give it "
                                 f"values (e.g. points with {n!r}) or leave it out of names")
            if all(h.get(n) == 0 for h in start):
                raise UsageError(f"PBT cannot explore {n!r}: it is 0 for every member, so its term is compiled "
                                 "out of the program; start some members at a nonzero value")


def groups(start: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Members by group (those that share model, optimizer, batch size, ...: one compiled program), from
    their recorded settings, in member order."""
    out: dict[tuple, list[int]] = {}
    for i, h in enumerate(start):
        out.setdefault(tuple((k, repr(h[k])) for k in GROUPED if k in h), []).append(i)
    return list(out.values())


def starting_space(start: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Range | None]:
    """The range each name's starting values span (on the table's axis), where PBT draws and keeps its
    values when no space is given; None for a name all members started at one value (perturbed freely
    within the table's bounds, never resampled)."""
    out: dict[str, Range | None] = {}
    for n in names:
        vals = [float(h[n]) for h in start]
        low, high = min(vals), max(vals)
        log = hp_table.row(n).log and low > 0
        out[n] = Range(low, high, log=log) if low < high else None
    return out


def perturbed(name: str, value: float, factor: float, spec: Spec | None) -> float:
    """`value` times `factor`, kept within `spec` (a range: clipped; integers: rounded; a choice: the next
    listed value up or down, by the factor's direction) and the table's bounds for `name`."""
    row = hp_table.row(name)
    spec = parse_spec(spec, name) if isinstance(spec, str) else spec
    if isinstance(spec, Choice):
        choices = sorted(float(c) for c in spec.values)
        at = min(range(len(choices)), key=lambda j: (abs(choices[j] - value), j))
        step = (factor > 1) - (factor < 1)
        v = choices[min(max(at + step, 0), len(choices) - 1)]
    else:
        v = value * factor
        if spec is not None:
            low, high = (spec.low, spec.high) if isinstance(spec, (Range, IntRange)) else tuple(float(b) for b in spec)
            v = min(max(v, float(low)), float(high))
            if isinstance(spec, IntRange):
                v = float(round(v))
    v = float(f"{v:.10g}")   # values read back exactly from results files (as jaxmlp.search.sample rounds them)
    # The table's open bounds (a dropout rate below 1, a learning rate above 0).
    low = math.nextafter(row.low, math.inf) if row.low_open else row.low
    high = math.nextafter(row.high, -math.inf) if row.high_open else row.high
    return row.check(min(max(v, low), high))


def pbt_sweep(config: SweepConfig, space: Mapping[str, Spec], n: int = 16, *, method: str = "random",
              seed: int = 0, out: str | os.PathLike | None = None, every: int = 2, fraction: float = 0.25,
              perturb: Sequence[float] = (0.8, 1.25), resample: float = 0.25, metric: str = "val_accuracy",
              callbacks: Sequence[Callback] = (), **sweep_kwargs: Any) -> Any:
    """Population-based training of `n` members started at points of `space` drawn by `method` from
    `seed` (:func:`jaxmlp.search.sample`), exploring every name of `space`: ``jaxmlp.sweep`` of `config`
    with those points and a :class:`PBT` callback (its seed `seed` too). Returns the sweep's results;
    `out`, `callbacks` and the other keywords go to :func:`jaxmlp.sweep`."""
    if config.points is not None:
        raise UsageError("pbt_sweep draws its own starting points: give a config without points")
    pbt = PBT(every=every, fraction=fraction, names=tuple(space), space=space, perturb=perturb,
              resample=resample, seed=seed, metric=metric)
    config = copy.copy(config)
    config.hparams = dict(config.hparams)
    config.points = sample(space, n, method, seed)
    import jaxmlp

    return jaxmlp.sweep(config, out, callbacks=[pbt, *callbacks], **sweep_kwargs)


# ---- reading a PBT run back ----------------------------------------------------------------------------

def pbt_events(results: Any) -> list[dict[str, Any]]:
    """The exploit events of a run's ``results.json`` (``results.events`` whose schedule is PBT)."""
    return [e for e in results.events if e.get("schedule") == EVENT]


def explored_names(results: Any) -> list[str]:
    """The names PBT changed in a run (those of its events), else the numeric table hyperparameters that
    differ between members."""
    names = list(dict.fromkeys(n for e in pbt_events(results) for n in e["hparams"]))
    if names or not results.members:
        return names
    return [n for n in hp_table.TABLE if n in results.members[0]["hparams"]
            and len({m["hparams"][n] for m in results.members}) > 1]


def schedules(results: Any, names: Sequence[str] | None = None) -> dict[int, list[tuple[int, dict[str, float]]]]:
    """Every member's hyperparameter schedule: ``{member: [(epoch, {name: value}), ...]}``, the values in
    effect from after `epoch` on (0: its starting point), one entry per change. `names`: default
    :func:`explored_names`."""
    names = list(names) if names is not None else explored_names(results)
    out = {m["index"]: [(0, {n: m["hparams"].get(n) for n in names})] for m in results.members}
    for e in pbt_events(results):
        values = {**out[e["member"]][-1][1], **{n: v for n, v in e["hparams"].items() if n in names}}
        out[e["member"]].append((int(e["epoch"]), values))
    return out


def final_hparams(results: Any, names: Sequence[str] | None = None) -> dict[int, dict[str, float]]:
    """Every member's values of the explored names at the end of training."""
    return {i: s[-1][1] for i, s in schedules(results, names).items()}


def lineage(results: Any) -> dict[int, list[tuple[int, int, int]]]:
    """Whose training each member's final weights descend from: ``{member: [(start, end, owner), ...]}``,
    in epoch order, meaning epochs ``start+1..end`` were trained as member `owner` (the last owner is the
    member itself). A member never replaced has one segment ``(0, epochs_run, member)``."""
    replaced: dict[int, list[tuple[int, int]]] = {}
    for e in pbt_events(results):
        replaced.setdefault(e["member"], []).append((int(e["epoch"]), int(e["from"])))
    out = {}
    for m in results.members:
        owner, end = m["index"], int(m.get("epochs_run") or len(results.history))
        segments = []
        while True:
            # An exploit at epoch e hands over the state after epoch e (the source's, before any exploit of it).
            earlier = [(e, src) for e, src in replaced.get(owner, []) if e < end]
            if not earlier:
                segments.append((0, end, owner))
                break
            e, src = earlier[-1]
            segments.append((e, end, owner))
            owner, end = src, e
        out[m["index"]] = segments[::-1]
    return out
