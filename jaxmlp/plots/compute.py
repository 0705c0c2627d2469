"""The best validation accuracy against compute spent (member-epochs): how fast a search finds good points.

One line per run, so a successive-halving run and the full grid it prunes can share one axes (the halving
line should reach the grid's height at a fraction of its width). A run given as a list of results (the
brackets of Hyperband) is drawn as one line, its parts one after another.

The height after an epoch is the best of every member's number as it stands then (its last epoch so far;
a pruned member keeps the number of the epoch it stopped at, a diverged one counts no more): what the run
would report as its best had it ended there, so a line ends at ``Results.best()``'s value (without early
stopping, whose members report their best epoch). A member's number can fall from one epoch to the next,
and the line with it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np
from matplotlib.axes import Axes

from jaxmlp.errors import UsageError
from jaxmlp.results import Results

from jaxmlp.plots.axes import context, legend
from jaxmlp.plots.style import figure, hue_colors, styled

METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
Run = Union[Results, Sequence[Results]]


def best_curve(run: Run, metric: str = "val_accuracy") -> tuple[np.ndarray, np.ndarray]:
    """After each epoch of `run` (one Results, or several trained one after another): the member-epochs
    trained so far (x) and the best `metric` of the members as they stand (y, see the module: highest
    accuracy, lowest loss; accuracy as a fraction, as in the history; NaN while no member has a number).
    Needs the history (``history.jsonl``)."""
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    parts = [run] if isinstance(run, Results) else list(run)
    if not parts or any(not r.history for r in parts):
        raise UsageError("a best-so-far curve needs each run's per-epoch history (history.jsonl); "
                         "rerun the sweep's command to write it")
    better = max if metric.endswith("accuracy") else min
    spent, xs, ys, standing = 0, [], [], {}
    for k, res in enumerate(parts):
        diverged = {m["index"]: m.get("diverged_epoch") for m in res.members if m.get("diverged_epoch")}
        for record in res.history:
            spent += sum(v is not None for v in record["val_loss"])   # the members that trained this epoch
            for i, v in enumerate(record[metric]):
                if diverged.get(i) is not None and record["epoch"] >= diverged[i]:
                    standing.pop((k, i), None)
                elif v is not None and math.isfinite(v):
                    standing[(k, i)] = v
            xs.append(spent)
            ys.append(better(standing.values()) if standing else math.nan)
    return np.array(xs, dtype=float), np.array(ys, dtype=float)


@styled
def best_vs_compute(runs: Mapping[str, Run], metric: str = "val_accuracy", ax: Axes | None = None) -> Axes:
    """`metric`'s best (:func:`best_curve`) against member-epochs trained, one stepped line per
    run (``{label: results or [results, ...]}``), each labelled with its total member-epochs and its best;
    accuracy in percent. The title names the first run's fixed settings."""
    if not runs:
        raise UsageError("best_vs_compute needs at least one run: {label: results}")
    if ax is None:
        ax = figure((6.4, 4.2))[1][0, 0]
    accuracy = metric.endswith("accuracy")
    scale = 100.0 if accuracy else 1.0
    for (label, run), color in zip(runs.items(), hue_colors(len(runs))):
        x, y = best_curve(run, metric)
        y = y * scale
        ax.step(np.concatenate([[0.0], x]), np.concatenate([[np.nan], y]), where="post", color=color,
                label=f"{label}: {int(x[-1]):,} member-epochs, ends at {y[-1]:.{2 if accuracy else 4}f}"
                      + (" %" if accuracy else ""))
        ax.plot(x, y, linestyle="none", marker="o", markersize=3, color=color)
    split, what = metric.split("_")
    name = {"val": "validation", "train": "train"}[split]
    ax.set_xlabel("member-epochs trained (compute spent)")
    ax.set_ylabel(f"best member's {name} {what}" + (" (%)" if accuracy else " (nats)"))
    ax.set_xlim(left=0)
    first = next(iter(runs.values()))
    first = first if isinstance(first, Results) else first[0]
    ax.set_title(f"Best {name} {what} against compute\n{context(first)}")
    legend(ax, len(runs))
    return ax


def save_compute_plot(runs: Mapping[str, Run], path: str | os.PathLike, metric: str = "val_accuracy") -> Path:
    """Draw :func:`best_vs_compute` and write it as a PNG at `path` (its folder is created)."""
    from jaxmlp.plots import _save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(best_vs_compute(runs, metric).figure, path)
