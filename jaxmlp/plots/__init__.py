"""Comparison figures of a run, drawn from its files alone (``results.json`` and ``history.jsonl``).

:func:`plot_run` reads a run directory and writes ``plots/*.png`` into it; ``jaxmlp plot RUN_DIR`` and
the end of every sweep call it. The pieces it composes take a :class:`~jaxmlp.results.Results` and return
the Axes or Figure, so experiments can reuse them:

- :func:`metric_vs_param`: final validation/test accuracy or loss (or the train-validation gap) against
  one hyperparameter; seed and fold axes become means with 95 % confidence intervals (n per point in
  the title), other swept axes one line each.
- :func:`gap_vs_param`: the train-validation gap in accuracy and in loss against one hyperparameter.
- :func:`learning_curves`: train and validation loss/accuracy per epoch for every member, coloured by
  one swept setting (with a colorbar for numbers, a legend for names).
- :func:`heatmap`: one metric over a grid of two swept settings, values written in the cells.

Figures are built on matplotlib's Agg canvas directly (no pyplot, no display, no global state), with
colour-blind-safe colours (the Okabe-Ito cycle, viridis) and sized to be read at about 6 x 4 in, 120 dpi.
Accuracies are shown in percent, losses in nats (mean cross-entropy). Modules: :mod:`.style` (the
look), :mod:`.axes` (what a run swept, axis scales, notes), :mod:`.summary` (metric and gap against a
setting), :mod:`.curves`, :mod:`.heatmap`; the per-member numbers come from :mod:`jaxmlp.values`.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from matplotlib.figure import Figure

from jaxmlp.errors import UsageError
from jaxmlp.results import Results
from jaxmlp.values import METRICS, REPLICATES, member_values, swept_axes

from jaxmlp.plots.axes import primary_axes
from jaxmlp.plots.curves import learning_curves
from jaxmlp.plots.heatmap import heatmap
from jaxmlp.plots.style import (DPI, LINE_CMAP, LOG_AXES, METRIC_LABEL, METRIC_TITLE, OKABE_ITO, PARAM_LABEL,
                                PARAM_SHORT, PARAM_TITLE, SPLIT_COLOR, SPLIT_NAME, SPLIT_STYLE, STYLE)
from jaxmlp.plots.summary import gap_vs_param, metric_vs_param

__all__ = ["plot_run", "metric_vs_param", "gap_vs_param", "learning_curves", "heatmap", "member_values",
           "swept_axes", "primary_axes", "STYLE", "OKABE_ITO", "LINE_CMAP", "DPI", "METRICS", "REPLICATES",
           "LOG_AXES", "PARAM_LABEL", "PARAM_TITLE", "PARAM_SHORT", "METRIC_LABEL", "METRIC_TITLE",
           "SPLIT_COLOR", "SPLIT_NAME", "SPLIT_STYLE"]


def _save(fig: Figure, path: Path) -> Path:
    # Write beside the target, then rename: a reader (a README, a browser) never sees half a PNG.
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    os.replace(tmp, path)
    return path


MAX_HEATMAP_VALUES = 24   # values per axis beyond which a run is not a grid to draw as a heatmap


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Draw a run's figures from its files (results.json, history.jsonl) into ``run_dir/plots/``.

    For each swept setting X (other than seed and fold, unless nothing else was swept):
    ``accuracy_vs_X.png``, ``loss_vs_X.png`` (validation and test) and ``gap_vs_X.png``; then
    ``learning_curves.png`` coloured by the first such setting (``learning_curves_by_X.png`` for the
    others) and, for each pair of them, ``heatmap_X_Y_test_accuracy.png``. A run of one member gets
    ``learning_curves.png`` only. Returns the paths written. Raises :class:`UsageError` when `run_dir`
    holds no readable results.json.
    """
    run_dir = Path(run_dir)
    res = Results.read(run_dir)
    if not res.members:
        raise UsageError(f"{run_dir / 'results.json'} lists no members; there is nothing to plot")
    out = run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    axes = primary_axes(res)
    if len(res.members) == 1 or not axes:
        if res.history:
            written.append(_save(learning_curves(res), out / "learning_curves.png"))
        return written
    for p in axes:
        written.append(_save(metric_vs_param(res, p, "accuracy").figure, out / f"accuracy_vs_{p}.png"))
        written.append(_save(metric_vs_param(res, p, "loss").figure, out / f"loss_vs_{p}.png"))
        if res.history:
            written.append(_save(gap_vs_param(res, p), out / f"gap_vs_{p}.png"))
    if res.history:
        written.append(_save(learning_curves(res, axes[0]), out / "learning_curves.png"))
        for p in axes[1:]:
            written.append(_save(learning_curves(res, p), out / f"learning_curves_by_{p}.png"))
    # A heatmap needs a grid: sampled points (every value distinct) would make one cell per point.
    grid_axes = [a for a in axes if a not in REPLICATES
                 and len({repr(m["hparams"].get(a)) for m in res.members}) <= MAX_HEATMAP_VALUES]
    for a, b in itertools.combinations(grid_axes, 2):
        written.append(_save(heatmap(res, a, b).figure, out / f"heatmap_{a}_{b}_test_accuracy.png"))
    if res.history and any(m.get("status") == "pruned" for m in res.members):
        from jaxmlp.plots.compute import best_vs_compute   # imported here: only runs a schedule pruned draw it

        written.append(_save(best_vs_compute({run_dir.name: res}).figure, out / "compute.png"))
    if any(e.get("schedule") == "pbt" for e in res.events):
        from jaxmlp.plots.pbt import pbt_schedules   # imported here: only PBT runs draw it

        written.append(_save(pbt_schedules(res), out / "pbt_schedules.png"))
    return written
