"""Successive halving and Hyperband: judge members at rungs and stop the weaker ones, so compute goes to
the promising points.

:class:`SuccessiveHalving` is a schedule (a :class:`jaxmlp.callbacks.Callback`) for any sweep, a grid or
sampled points: after epoch ``min_epochs·η^k`` (rung k, while ``min_epochs·η^(k+1)`` is within the sweep's
epochs) it keeps the best ``ceil(n/η)`` of the ``n`` points still training and stops the rest
(``results.json``: status ``pruned``, ``rung`` k). Stopped members leave the compiled batch, so the epochs
after a rung get cheaper (:func:`jaxmlp.members.repack`).

A *point* is a member's settings without its seed and fold: a sweep with several seeds judges a point by
its metric's mean over them and stops all its seeds together (one seed is one noisy draw of the point's
quality). Points are ranked across the whole sweep by default, groups included (an optimizer or a width
is one more coordinate of a point); ``per_group=True`` ranks within each group instead (needed when
groups' metrics are not comparable, e.g. two datasets).

:func:`hyperband` runs Hyperband (Li et al., 2018, "Hyperband: a novel bandit-based approach to
hyperparameter optimization", JMLR 18): brackets s = s_max..0 of successive halving, each with more
points and fewer epochs before its first rung than the next, so it hedges between stopping early and
training long. Each bracket is one sweep of sampled points. Decisions depend on the history alone, so a
killed search resumes (bracket by bracket, from their checkpoints) and decides alike.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from jaxmlp.callbacks import Callback
from jaxmlp.config import GROUPED, SweepConfig
from jaxmlp.errors import UsageError

METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
REPLICATES = ("seed", "fold")   # what varies between the members of one point


def check(eta: Any, min_epochs: Any, epochs: int | None = None, *, flags: tuple[str, str] = ("eta", "min_epochs"),
          epochs_flag: str = "epochs") -> None:
    """Raise a one-line :class:`UsageError` unless η is an integer >= 2 and `min_epochs` >= 1 (and, with
    `epochs`, leaves at least one rung: ``min_epochs·η <= epochs``). `flags` name them in the message."""
    eta_flag, min_flag = flags
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise UsageError(f"{eta_flag} must be an integer of at least 2 (the share kept at a rung is 1/{eta_flag}), "
                         f"got {eta!r}")
    if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 1:
        raise UsageError(f"{min_flag} must be an integer of at least 1, got {min_epochs!r}")
    if epochs is not None and min_epochs * eta > epochs:
        raise UsageError(f"{min_flag} {min_epochs} × {eta_flag} {eta} exceeds {epochs_flag} {epochs}: no rung would "
                         f"leave its survivors {eta} times its epochs; lower {min_flag} or {eta_flag}, or raise "
                         f"{epochs_flag}")


def rungs(eta: int, min_epochs: int, epochs: int) -> list[int]:
    """The epochs after which successive halving judges: ``min_epochs·η^k`` for every k whose survivors
    then get at least η times the epochs (``min_epochs·η^(k+1) <= epochs``). When `epochs` is
    ``min_epochs·η^K`` these are the rungs below `epochs`; otherwise the last stretch is longer than η
    times the one before it (never a rung that saves less than it costs to judge)."""
    out, r = [], min_epochs
    while r * eta <= epochs:
        out.append(r)
        r *= eta
    return out


def _point_key(hp: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in hp.items() if k not in REPLICATES}, sort_keys=True, default=str)


def _group_key(hp: Mapping[str, Any]) -> str:
    return json.dumps({k: hp[k] for k in GROUPED if k in hp}, sort_keys=True, default=str)


class SuccessiveHalving(Callback):
    """Successive halving as a schedule: ``jaxmlp.sweep(config, callbacks=[SuccessiveHalving(3)])``.

    After rung k's epoch (:func:`rungs`: ``min_epochs·η^k``), of the ``n`` points still training (a point:
    a member's settings without seed and fold; see the module) it keeps the best ``ceil(n/η)`` by this
    epoch's `metric` (the mean over a point's members; accuracy: higher is better, loss: lower) and stops
    every member of the others with ``status="pruned", rung=k``. A point with a member that has no number
    this epoch (it diverged, or early stopping stopped it before) ranks last; ties go to the point of the lower member index, so decisions are a
    function of the history alone (a resumed sweep takes them again alike). `per_group` ranks within each
    group (see the module) instead of across the sweep. Each rung is logged in ``results.json``'s events.
    Before each rung it tells the population how many members will go on (:meth:`Population.expect`), so
    the smaller program they will train in compiles in the background while the rung trains.

    With ``min_epochs·η`` above the sweep's epochs there is no rung and it does nothing (Hyperband's last
    bracket). Keeping ``ceil(n/η)`` differs from Li et al.'s ``floor(n/η)`` only when η does not divide n:
    it never stops every point, and keeps one more.
    """

    def __init__(self, eta: int = 3, min_epochs: int = 1, metric: str = "val_accuracy", per_group: bool = False):
        check(eta, min_epochs)
        if metric not in METRICS:
            raise UsageError(f"successive halving ranks by one of {', '.join(METRICS)}; got {metric!r}")
        self.eta, self.min_epochs, self.metric, self.per_group = eta, min_epochs, metric, per_group

    def rung(self, epoch: int, epochs: int) -> int | None:
        """The rung judged after `epoch` of a sweep of `epochs`, or None."""
        at = rungs(self.eta, self.min_epochs, epochs)
        return at.index(epoch) if epoch in at else None

    def on_start(self, population: Any) -> None:
        self._expect(population, 0)

    def on_population(self, population: Any) -> None:
        k = self.rung(population.epoch, population.epochs)
        if k is None:
            return
        values = population.metric(self.metric)
        sign = -1.0 if self.metric.endswith("loss") else 1.0
        stopped: list[int] = []
        kept = 0
        candidates, points, by_group, active = self._candidates(population)
        for members in by_group.values():
            ranked = sorted(members, key=lambda p: self._rank_key(points[p], values, sign))
            keep = math.ceil(len(ranked) / self.eta)
            kept += keep
            stopped += [i for p in ranked[keep:] for i in points[p] if i in active]
        population.stop(stopped, status="pruned", rung=k)
        population.log({"schedule": "successive_halving", "rung": k, "metric": self.metric,
                        "points": len(candidates), "kept": kept, "stopped_members": len(stopped)})
        self._expect(population, k + 1)

    def _candidates(self, population: Any
                    ) -> tuple[list[str], dict[str, list[int]], dict[str, list[str]], set[int]]:
        """The points still training, every point's members (in index order), the candidates by group, and
        the members training."""
        active = set(population.active())
        points: dict[str, list[int]] = {}
        groups: dict[str, str] = {}
        for i in range(population.size):
            hp = population.hparams(i)
            key = _point_key(hp)
            points.setdefault(key, []).append(i)
            groups[key] = _group_key(hp) if self.per_group else ""
        candidates = [p for p, members in points.items() if active.intersection(members)]
        by_group: dict[str, list[str]] = {}
        for p in candidates:
            by_group.setdefault(groups[p], []).append(p)
        return candidates, points, by_group, active

    def _expect(self, population: Any, k: int) -> None:
        """Before rung k: have the programs of its survivors compiled while the population trains."""
        if k >= len(rungs(self.eta, self.min_epochs, population.epochs)):
            return
        _, points, by_group, active = self._candidates(population)
        kept = 0
        for members in by_group.values():
            sizes = sorted((len(active.intersection(points[p])) for p in members), reverse=True)
            kept += sum(sizes[:math.ceil(len(members) / self.eta)])
        population.expect(kept)

    @staticmethod
    def _rank_key(members: list[int], values: list[float | None], sign: float) -> tuple:
        numbers = [values[i] for i in members]
        if any(v is None or not math.isfinite(v) for v in numbers):
            return (1, 0.0, members[0])   # a member without a number (diverged): ranked last
        return (0, -sign * math.fsum(numbers) / len(numbers), members[0])


# ---- Hyperband ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bracket:
    """One bracket of Hyperband: `points` points trained `start_epochs` before the first rung, halved by η
    at each of `rungs` epochs until the last train to the budget."""

    s: int
    points: int
    start_epochs: int
    rungs: tuple[int, ...]


def brackets(max_epochs: int, eta: int = 3, min_epochs: int = 1) -> list[Bracket]:
    """Hyperband's brackets, s = s_max..0 (Li et al., 2018, Algorithm 1, resources in epochs):
    ``s_max = floor(log_η(max_epochs/min_epochs))``; bracket s has ``n = ceil((s_max+1)/(s+1)·η^s)`` points
    and ``r = min_epochs·η^(s_max-s)`` epochs before its first rung (Li et al.'s ``R·η^-s``, which is this
    when `max_epochs` is ``min_epochs·η^s_max``; otherwise r stays an integer and the last stretch of every
    bracket is longer). E.g. 81 epochs, η 3: (81, 1), (34, 3), (15, 9), (8, 27), (5, 81)."""
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise UsageError(f"--epochs (the most epochs a point trains) must be a positive integer, got {max_epochs!r}")
    # Without a rung Hyperband is one bracket of s_max + 1 = 1 point trained to the end: surely a mistake.
    check(eta, min_epochs, max_epochs, flags=("--eta", "--min-epochs"), epochs_flag="--epochs")
    s_max = len(rungs(eta, min_epochs, max_epochs))   # η^s_max·min_epochs <= max_epochs < η^(s_max+1)·min_epochs
    out = []
    for s in range(s_max, -1, -1):
        n = -(-(s_max + 1) * eta ** s // (s + 1))      # exact integer ceil
        r = min_epochs * eta ** (s_max - s)
        out.append(Bracket(s, n, r, tuple(rungs(eta, r, max_epochs))))
    return out


@dataclass
class HyperbandResults:
    """What :func:`hyperband` produced: each bracket's :class:`jaxmlp.results.Results` (in bracket order,
    s_max first) and the summary written to ``hyperband.json``."""

    brackets: list[Bracket]
    results: list[Any]
    summary: dict[str, Any]

    def best(self) -> tuple[Bracket, dict[str, Any]]:
        """The bracket and member with the highest validation accuracy over every bracket (the first
        bracket's on a tie)."""
        scored = []
        for b, r in zip(self.brackets, self.results):
            try:
                scored.append((b, r.best()))
            except UsageError:   # every member of this bracket diverged
                continue
        if not scored:
            raise UsageError("no member of any bracket has a finite validation accuracy: every member diverged")
        return max(scored, key=lambda bm: (bm[1]["val"]["accuracy"], -self.brackets.index(bm[0])))


def hyperband(config: SweepConfig, space_or_points: Mapping[str, Any] | Sequence[Mapping[str, float]], *,
              eta: int = 3, min_epochs: int = 1, max_epochs: int | None = None, out: str | os.PathLike | None = None,
              seed: int = 0, method: str = "random", metric: str = "val_accuracy", per_group: bool = False,
              **sweep_kwargs: Any) -> HyperbandResults:
    """Hyperband over `space_or_points`: a space ({name: spec}, as :func:`jaxmlp.search.sample` takes; the
    brackets' points are drawn together from `seed` by `method`, so they differ) or a list of points
    (taken in order; it must hold as many as the brackets need: ``sum(b.points for b in brackets(...))``).

    Each bracket (:func:`brackets`) is one sweep of `config` with its points (crossed with `config`'s
    hyperparameter lists and seeds, if any), ``epochs=max_epochs`` (default: ``config.epochs``) and a
    :class:`SuccessiveHalving` schedule starting at the bracket's first rung; it is written to
    ``<out>/bracket_<s>/`` (checkpoints there too, unless ``checkpoint_dir`` says otherwise: then in
    ``<checkpoint_dir>/bracket_<s>``), so rerunning the same call resumes. Brackets with the same member
    count share compiled programs. `sweep_kwargs` go to :func:`jaxmlp.sweep` (``progress``, ``plots``,
    ``callbacks``, ...). Writes ``<out>/hyperband.json`` (per bracket: points, member-epochs, best; the best
    overall) and ``<out>/plots/compute.png`` (the best validation accuracy against member-epochs, per bracket and
    all brackets in order).
    """
    from jaxmlp import checkpoint
    from jaxmlp.run import run_sweep
    from jaxmlp.search.points import sample

    max_epochs = config.epochs if max_epochs is None else max_epochs
    plan = brackets(max_epochs, eta, min_epochs)
    total = sum(b.points for b in plan)
    if isinstance(space_or_points, Mapping):
        points = sample(space_or_points, total, method, seed)
    else:
        points = [dict(p) for p in space_or_points]
        if len(points) < total:
            raise UsageError(f"Hyperband with --epochs {max_epochs}, --eta {eta}, --min-epochs {min_epochs} needs "
                             f"{total} points ({' + '.join(str(b.points) for b in plan)}); got {len(points)}")
    out = Path(out) if out is not None else None
    ckpt_root = sweep_kwargs.pop("checkpoint_dir", checkpoint.DEFAULT)
    callbacks = list(sweep_kwargs.pop("callbacks", ()))
    name = sweep_kwargs.pop("name", None) or (out.name if out is not None else "hyperband")
    results, start = [], 0
    for b in plan:
        bracket_config = dataclasses.replace(config, epochs=max_epochs, points=points[start:start + b.points])
        start += b.points
        own = ckpt_root is checkpoint.DEFAULT or ckpt_root is None   # each bracket's default folder, or none
        ckpt_dir = ckpt_root if own else Path(ckpt_root) / f"bracket_{b.s}"
        schedule = SuccessiveHalving(eta, b.start_epochs, metric, per_group)
        results.append(run_sweep(bracket_config, out / f"bracket_{b.s}" if out is not None else None,
                                 checkpoint_dir=ckpt_dir, callbacks=[*callbacks, schedule],
                                 name=f"{name} bracket {b.s}", **sweep_kwargs))
    hb = HyperbandResults(plan, results, {})
    hb.summary = summary(hb, eta, min_epochs, max_epochs, metric)
    if out is not None:
        from jaxmlp import hosts

        if hosts.is_primary():
            _write(hb, out, sweep_kwargs.get("plots", True))
    return hb


def summary(hb: HyperbandResults, eta: int, min_epochs: int, max_epochs: int, metric: str) -> dict[str, Any]:
    """hyperband.json's content: settings, each bracket's points, member-epochs (trained, and with every
    member trained to the budget) and best member, and the best overall."""
    rows = []
    for b, res in zip(hb.brackets, hb.results):
        try:
            best = res.best()
        except UsageError:   # every member of the bracket diverged
            best = None
        rows.append({"s": b.s, "dir": f"bracket_{b.s}", "points": b.points, "members": len(res.members),
                     "start_epochs": b.start_epochs, "rungs": list(b.rungs),
                     "member_epochs": res.timing.get("member_epochs"),
                     "member_epochs_full": res.timing.get("member_epochs_full"),
                     "train_s": res.timing.get("train_s"), "compile_s": res.timing.get("compile_s"),
                     "best": _brief(best)})
    try:
        b, m = hb.best()
        best_all = {"bracket": b.s, **_brief(m)}
    except UsageError:
        best_all = None
    return {"method": "hyperband", "eta": eta, "min_epochs": min_epochs, "max_epochs": max_epochs, "metric": metric,
            "s_max": hb.brackets[0].s, "brackets": rows,
            "member_epochs": sum(r["member_epochs"] or 0 for r in rows),
            "member_epochs_full": sum(r["member_epochs_full"] or 0 for r in rows),
            "best": best_all}


def _brief(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {k: m[k] for k in ("index", "hparams", "status", "epochs_run", "val", "test") if k in m}


def _write(hb: HyperbandResults, out: Path, plots: bool) -> None:
    from jaxmlp.results import _atomic_write, _json_safe

    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "hyperband.json", json.dumps(_json_safe(hb.summary), indent=1, allow_nan=False))
    if plots:
        from jaxmlp.plots.compute import save_compute_plot

        runs = {f"bracket {b.s}": r for b, r in zip(hb.brackets, hb.results)}
        runs["all brackets, in order"] = list(hb.results)
        save_compute_plot(runs, out / "plots" / "compute.png")
