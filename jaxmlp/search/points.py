"""Random and quasi-random points over hyperparameter ranges: N points train as one N-member job.

A space maps each name to its range ``(low, high)``; the table row of a name (:mod:`jaxmlp.hparams`) says
whether its axis is logarithmic (``lr``, ``l1``, ``l2``, ``weight_decay``: points spread evenly over the
decades) and bounds every value. Quasi-random points come from ``scipy.stats.qmc`` (Sobol, Halton), which
cover a space more evenly than independent draws for the same count. No jax import.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from jaxmlp import hparams as hp_table
from jaxmlp.errors import UsageError

METHODS = ("random", "sobol", "halton")


def sample(space: Mapping[str, tuple[float, float]], n: int, method: str = "random", seed: int = 0,
           log: Mapping[str, bool] | None = None) -> list[dict[str, float]]:
    """`n` points of `space` ({name: (low, high)}), drawn by `method` (random, sobol or halton) from
    `seed`. `log` overrides the table's axis of a name. Every value passes the name's table check."""
    if method not in METHODS:
        raise UsageError(f"unknown sampler {method!r}; choose one of: {', '.join(METHODS)}")
    if not 1 <= n <= 1_000_000:
        raise UsageError(f"a sample needs 1..1000000 points, got {n}")
    if not space:
        raise UsageError("a sample needs at least one hyperparameter range: --lr 1e-4:1e-1 on the command line, "
                         "{'lr': (1e-4, 1e-1)} from Python")
    names = list(space)
    unit = _unit_points(len(names), n, method, seed)
    points: list[dict[str, float]] = [{} for _ in range(n)]
    for j, name in enumerate(names):
        low, high = (float(v) for v in space[name])
        row = hp_table.row(name)
        for v in (low, high):
            row.check(v)
        if not low < high:
            raise UsageError(f"{row.flag} range {low:g}:{high:g} is empty; give low < high")
        is_log = (log or {}).get(name, row.log)
        if is_log and low <= 0:
            raise UsageError(f"{row.flag} range {low:g}:{high:g} is on a log axis: give a positive low bound")
        u = unit[:, j]
        values = np.exp(np.log(low) + u * (np.log(high) - np.log(low))) if is_log else low + u * (high - low)
        for i, v in enumerate(values):
            # Round away float noise so values read back exactly from results files; stay inside the range
            # (the table's open bounds, e.g. a dropout rate below 1).
            points[i][name] = row.check(min(max(float(f"{v:.10g}"), low), math.nextafter(high, low)))
    return points


def _unit_points(d: int, n: int, method: str, seed: int) -> np.ndarray:
    """(n, d) points in [0, 1)."""
    if method == "random":
        return np.random.default_rng(seed).random((n, d))
    from scipy.stats import qmc   # imported here: only quasi-random sampling needs scipy

    engine = qmc.Sobol(d, scramble=True, seed=seed) if method == "sobol" else qmc.Halton(d, scramble=True, seed=seed)
    return engine.random(n)
