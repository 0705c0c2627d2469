"""One metric over the grid of two swept settings, each cell's mean and 95 % interval written in it."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.axes import Axes

from jaxmlp import stats
from jaxmlp.results import Results
from jaxmlp.values import check_param, distinct, fmt, key, member_values, swept_axes

from jaxmlp.plots.axes import context, folds_of, interval_note
from jaxmlp.plots.style import METRIC_LABEL, PARAM_LABEL, PARAM_TITLE, SPLIT_NAME, figure, styled


@styled
def heatmap(results: Results, x: str, y: str, metric: str = "accuracy", split: str = "test",
            ax: Axes | None = None) -> Axes:
    """`split` `metric` over the grid of `x` (columns) by `y` (rows), each cell the mean over the members
    there (over seeds, folds and any other swept setting), written in the cell with ± the half-width of
    its 95 % interval when there are several. Cells are evenly spaced whatever the values; the colour
    scale is viridis, brighter = better."""
    check_param(results, x)
    check_param(results, y)
    if ax is None:
        ax = figure((6.0, 4.6))[1][0, 0]
    values = member_values(results, metric, split)
    xv, yv = distinct(results, x), distinct(results, y)
    over = [a for a in swept_axes(results) if a not in (x, y)]
    cells: dict[tuple[int, int], list[float]] = {}
    for m, v in zip(results.members, values):
        cells.setdefault((yv.index(key(m["hparams"].get(y))), xv.index(key(m["hparams"].get(x)))), []).append(v)
    intervals = {rc: stats.mean_interval(vals, folds=folds_of(results, over)) for rc, vals in cells.items()}
    mean = np.full((len(yv), len(xv)), np.nan)
    for (r, c), ci in intervals.items():
        mean[r, c] = ci.mean
    # Brighter is better: reverse the map for losses and gaps, where lower is better.
    cmap = matplotlib.colormaps["viridis" if metric == "accuracy" else "viridis_r"]
    finite = mean[np.isfinite(mean)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-9:  # one value everywhere: a unit-wide scale instead of matplotlib's ±10 %
        lo, hi = lo - 1.0, hi + (0.0 if metric == "accuracy" and hi >= 100.0 else 1.0)
    norm = mcolors.Normalize(lo, hi)
    im = ax.imshow(np.ma.masked_invalid(mean), origin="lower", aspect="auto", cmap=cmap, norm=norm)
    ax.grid(False)
    digits = 1 if metric.startswith("accuracy") else 3
    size = 9 if len(xv) * len(yv) <= 36 else 7
    for (r, c), ci in intervals.items():
        if ci.n == 0:
            continue
        red, green, blue, _ = cmap(norm(ci.mean))
        ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        text = f"{ci.mean:.{digits}f}" + (f"\n±{ci.half_width:.{digits}f}" if math.isfinite(ci.half_width) else "")
        ax.text(c, r, text, ha="center", va="center", color=ink, fontsize=size)
    ax.set_xticks(range(len(xv)), [fmt(v) for v in xv])
    ax.set_yticks(range(len(yv)), [fmt(v) for v in yv])
    ax.set_xlabel(PARAM_LABEL.get(x, x))
    ax.set_ylabel(PARAM_LABEL.get(y, y))
    name = f"{SPLIT_NAME[split].capitalize()} {METRIC_LABEL[metric]}" if not metric.endswith("_gap") \
        else METRIC_LABEL[metric]
    ax.figure.colorbar(im, ax=ax, label=name)
    note = interval_note(results, over, list(intervals.values()))
    note = f"\ncells: {note}" if note else ""
    ax.set_title(f"{name} over {PARAM_TITLE.get(x, x)} × {PARAM_TITLE.get(y, y)}\n{context(results)}{note}")
    return ax
