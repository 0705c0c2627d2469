"""Asynchronous successive halving inside one sweep: a fixed number of members train at once, stops free
their places, and waiting members take them, so the compiled batch stays full.

The rule is successive halving's, applied as members arrive (Li et al., "A System for Massively Parallel
Hyperparameter Tuning", 2020; Optuna's ``SuccessiveHalvingPruner`` decides alike): rungs sit at
``min_epochs · eta^k`` epochs of a member's own training; a member reaching rung k trains on only if its
metric there is among the best ``1/eta`` of every member's at rung k so far (the single best while fewer
than ``eta`` have reached it), else it is stopped as ``pruned`` at rung k. A member reaching
``max_epochs`` is stopped as ``finished``. Places freed are given to waiting members in index order.
Every decision is a function of the history, so a resumed sweep takes them again alike.

Late starters count their epochs from their start (``results.json`` records ``started_epoch``); their
shuffles and dropout draws follow the sweep's epochs, and their learning-rate schedule the sweep's
length, so a ``constant`` schedule fits ASHA best.
"""

from __future__ import annotations

import math
from typing import Any

from jaxmlp.callbacks import Callback
from jaxmlp.errors import UsageError


class ASHA(Callback):
    """Asynchronous successive halving over a sweep's members (see the module): `slots` members train at
    once; rungs at ``min_epochs · eta^k``; members stop at `max_epochs` (default: the sweep's epochs).
    `metric`: a history metric, higher is better (``val_accuracy``) or, for a loss, lower."""

    def __init__(self, slots: int, eta: int = 3, min_epochs: int = 1, max_epochs: int | None = None,
                 metric: str = "val_accuracy"):
        if slots < 1:
            raise UsageError(f"ASHA needs at least 1 slot, got {slots}")
        if eta < 2:
            raise UsageError(f"ASHA's eta must be at least 2 (the share kept at each rung is 1/eta), got {eta}")
        if min_epochs < 1:
            raise UsageError(f"ASHA's min_epochs must be at least 1, got {min_epochs}")
        if metric not in ("val_accuracy", "val_loss", "train_accuracy", "train_loss"):
            raise UsageError(f"ASHA's metric {metric!r} is not a history metric; use val_accuracy or val_loss")
        self.slots, self.eta, self.min_epochs, self.max_epochs, self.metric = slots, eta, min_epochs, max_epochs, metric

    def rungs(self, max_epochs: int) -> list[int]:
        """A member's epochs at which it is judged: min_epochs · eta^k below `max_epochs`."""
        out, r = [], self.min_epochs
        while r < max_epochs:
            out.append(r)
            r *= self.eta
        return out

    def on_start(self, population: Any) -> None:
        top = self.max_epochs or population.epochs
        if top > population.epochs:
            raise UsageError(f"ASHA's max_epochs {top} exceeds the sweep's {population.epochs} epochs")
        population.hold(range(self.slots, population.size))

    def on_population(self, population: Any) -> None:
        top = self.max_epochs or population.epochs
        sign = -1.0 if "loss" in self.metric else 1.0
        rungs = self.rungs(top)
        history = population.history
        trained = [population.trained(i) for i in range(population.size)]   # each a pass over the history
        arrived: dict[int, list[tuple[float, int]]] = {k: [] for k in range(len(rungs))}
        for i in range(population.size):   # every member's score at each rung it reached (from the history)
            for k, r in enumerate(rungs):
                if trained[i] >= r:
                    v = history[population.started(i) + r - 1][self.metric][i]
                    if v is not None and math.isfinite(v):
                        arrived[k].append((sign * v, i))
        pruned: dict[int, list[int]] = {}
        finished = []
        for i in population.active():
            n = trained[i]
            if n >= top:
                finished.append(i)
            elif n in rungs:
                k = rungs.index(n)
                ranked = sorted(arrived[k], key=lambda t: (-t[0], t[1]))
                keep = {j for _, j in ranked[:max(1, len(ranked) // self.eta)]}
                if i not in keep:
                    pruned.setdefault(k, []).append(i)
        for k, ids in pruned.items():
            population.stop(ids, "pruned", rung=k)
        population.stop(finished, "finished")
        free = self.slots - len(population.active())
        if free > 0:
            population.start(population.waiting()[:free])
