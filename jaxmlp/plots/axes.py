"""What a run swept, as figures need it: the axes to draw against, a line naming what was held fixed,
the scale and ticks of a setting's axis, legends, and the note that says what an interval rests on."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import NullFormatter

from jaxmlp.results import Results
from jaxmlp.stats import Interval
from jaxmlp.values import REPLICATES, distinct, fmt, is_number, key, swept_axes

from jaxmlp.plots.style import LOG_AXES, PARAM_LABEL, PARAM_SHORT, noted


def primary_axes(results: Results) -> list[str]:
    """The axes figures are drawn against: the swept settings other than seed and fold, or (when a run
    swept only seeds or folds) those."""
    swept = swept_axes(results)
    return [a for a in swept if a not in REPLICATES] or swept


def numeric(results: Results, param: str) -> bool:
    return all(is_number(v) for v in distinct(results, param))


def folds_of(results: Results, over: Sequence[str]) -> int:
    """The fold count when the folds are among the axes summarised over (their intervals are then
    corrected for the folds' dependence), else 0."""
    return int(results.config.get("folds") or 0) if "fold" in over else 0


def context(results: Results) -> str:
    """One line naming what the run held fixed: data, model, optimiser, epochs, member count."""
    c, swept = results.config, set(swept_axes(results))
    hp = results.members[0]["hparams"] if results.members else {}
    parts = []
    for k in ("dataset", "model", "hidden", "optimizer"):
        if k in hp and k not in swept:
            parts.append(f"hidden {fmt(key(hp[k]))}" if k == "hidden" else fmt(hp[k]))
    if "batch_size" in hp and "batch_size" not in swept:
        parts.append(f"batch {hp['batch_size']}")
    if "lr" in hp and "lr" not in swept:
        parts.append(f"lr {fmt(hp['lr'])}")
    for k in ("dropout", "l1", "l2"):
        if hp.get(k) and k not in swept:
            parts.append(f"{k} {fmt(hp[k])}")
    if c.get("train_fraction", 1.0) < 1.0:
        parts.append(f"{c['train_fraction']:.0%} of training set")
    if c.get("folds"):
        parts.append(f"{c['folds']}-fold CV")
    if c.get("epochs"):
        parts.append(f"{c['epochs']} epochs" + (f", patience {c['patience']}" if c.get("patience") else ""))
    parts.append(f"{len(results.members)} member{'s' if len(results.members) != 1 else ''}")
    return " · ".join(parts)


def interval_note(results: Results, over: Sequence[str], intervals: Sequence[Interval]) -> str:
    """"95 % CI (t) over 3 seeds, n = 3 per point": what the error bars are and how many members each
    point rests on (a range when some were counted out); empty when nothing was summarised over."""
    if not over:
        return ""
    counts = " × ".join(f"{len(distinct(results, a))} {a}s" for a in over)
    ns = sorted({ci.n for ci in intervals})
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    methods = ", ".join(sorted({ci.method for ci in intervals if ci.n > 1})) or "none: one member a point"
    return f"mean and 95 % CI ({methods}) over {counts}, n = {n} per point"


def set_axis(ax: Axes, results: Results, param: str, which: str = "x") -> Callable[[Any], float]:
    """Scale, ticks and label of the axis showing `param`; returns the value -> position map."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    set_scale = ax.set_xscale if which == "x" else ax.set_yscale
    set_label = ax.set_xlabel if which == "x" else ax.set_ylabel
    vals = distinct(results, param)
    label = PARAM_LABEL.get(param, param)
    if not numeric(results, param):
        # Names (hidden widths, optimizers, ...) sit at evenly spaced positions.
        pos = {v: float(i) for i, v in enumerate(vals)}
        axis.set_ticks(list(pos.values()), [fmt(v) for v in vals])
        set_label(label)
        return lambda v: pos[key(v)]
    nums = np.array(vals, dtype=float)
    if param in LOG_AXES and (nums > 0).any():
        positive = nums[nums > 0]
        if (nums > 0).all():
            set_scale("log")
            label = noted(label, "log scale")
        else:
            # 0 (no penalty) has no place on a log axis; symlog keeps it, linear below the smallest λ.
            set_scale("symlog", linthresh=float(positive.min()), linscale=0.6)
            label = noted(label, "log scale, 0 at left")
    elif param == "batch_size" and (nums > 0).all():
        set_scale("log", base=2)
        label = noted(label, "log₂ scale")
    if len(vals) <= 10:
        axis.set_ticks(list(nums), [fmt(v) for v in vals])
        axis.set_minor_formatter(NullFormatter())
    set_label(label)
    return float


def legend(ax: Axes, n: int, title: str | None = None) -> None:
    """A legend inside the axes for a few lines, beside it (growing the figure) for many."""
    if n <= 6:
        ax.legend(loc="best", title=title)
    else:  # many lines: outside, to the right, so they hide no data
        shown = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title=title, fontsize=7.5)
        # Grow the figure by the legend's width (and to its height), so that constrained layout does not
        # squeeze the axes to make room for it (with ~40 long labels it squeezed them to nothing).
        fig, box = ax.figure, shown.get_window_extent()
        fig.set_figwidth(fig.get_figwidth() + box.width / fig.dpi)
        fig.set_figheight(max(fig.get_figheight(), box.height / fig.dpi + 1.0))


def hue_label(hue_axes: Sequence[str], hue: tuple) -> str:
    return ", ".join(f"{PARAM_SHORT.get(a, a)}={fmt(v)}" for a, v in zip(hue_axes, hue))
