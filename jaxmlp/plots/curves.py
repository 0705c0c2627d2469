"""Learning curves: train and validation loss and accuracy per epoch, from history.jsonl."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullFormatter

from jaxmlp.errors import UsageError
from jaxmlp.results import Results
from jaxmlp.values import REPLICATES, at, check_param, distinct, fmt, key, swept_axes

from jaxmlp.plots.axes import context, numeric, primary_axes
from jaxmlp.plots.style import (LINE_CMAP, LOG_AXES, METRIC_LABEL, OKABE_ITO, PARAM_LABEL, PARAM_TITLE,
                                SPLIT_COLOR, SPLIT_NAME, SPLIT_STYLE, figure, hue_colors, noted, styled)


def _color_map(results: Results, param: str) -> tuple[Callable[[Any], Any], Any]:
    """Member value -> colour, and what explains it: a ScalarMappable (numbers) or [(label, colour)]."""
    vals = distinct(results, param)
    if numeric(results, param) and param not in REPLICATES and len(vals) > 1:
        nums = np.array(vals, dtype=float)
        lo, hi = float(nums.min()), float(nums.max())
        if param in LOG_AXES and (nums > 0).all():
            norm: mcolors.Normalize = mcolors.LogNorm(lo, hi)
        elif param in LOG_AXES and (nums > 0).any():
            norm = mcolors.SymLogNorm(linthresh=float(nums[nums > 0].min()), linscale=0.6, vmin=lo, vmax=hi)
        else:
            norm = mcolors.Normalize(lo, hi)
        return (lambda v: LINE_CMAP(norm(float(v)))), ScalarMappable(norm=norm, cmap=LINE_CMAP)
    # Seeds, folds and names have no order worth a colour scale: distinct colours and a legend.
    colors = dict(zip(vals, hue_colors(len(vals))))
    return (lambda v: colors[key(v)]), [(fmt(v), colors[v]) for v in vals]


def _curve(results: Results, name: str, index: int) -> np.ndarray:
    y = np.array([math.nan if (v := at(line, name, index)) is None else float(v) for line in results.history])
    return y * 100.0 if name.endswith("accuracy") else y


def _integer_epochs(axes: np.ndarray) -> None:
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _one_member(results: Results, m: dict[str, Any], epochs: np.ndarray, marker: str | None) -> Figure:
    fig, axes = figure((9.0, 3.8), 1, 2)
    for ax, metric in zip(axes[0], ("loss", "accuracy")):
        for split in ("train", "val"):
            ax.plot(epochs, _curve(results, f"{split}_{metric}", m["index"]), color=SPLIT_COLOR[split],
                    linestyle=SPLIT_STYLE[split][0], marker=marker, label=SPLIT_NAME[split],
                    markerfacecolor="white" if split == "val" else SPLIT_COLOR[split])
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_LABEL[metric])
        ax.set_title(f"{metric.capitalize()} per epoch")
        ax.legend(loc="best")
    tested = f"; tested at epoch {m['best_epoch']}" if results.config.get("patience") else ""
    fig.suptitle(f"Learning curves of member {m['index']}{tested}\n{context(results)}")
    _integer_epochs(axes)
    return fig


@styled
def learning_curves(results: Results, color_by: str | None = None, *,
                    members: Sequence[int] | None = None) -> Figure:
    """Train and validation loss and accuracy per epoch (from history.jsonl).

    One member (a ``jaxmlp train`` run): two panels, train and validation lines in each. Several: four
    panels (rows loss/accuracy, columns train/validation), one line per member coloured by its
    `color_by` setting (default: the first swept axis) with a colorbar — log-scaled for λ and lr — or,
    for seeds, folds and names, a legend. `members` picks member indices (default: all). A member's
    line ends at the epoch it stopped.
    """
    if not results.history:
        raise UsageError("this run has no history.jsonl lines, so there are no learning curves to draw")
    wanted = None if members is None else set(members)
    chosen = [m for m in results.members if wanted is None or m["index"] in wanted]
    epochs = np.array([line["epoch"] for line in results.history])
    marker = "o" if len(epochs) <= 30 else None
    if len(chosen) == 1:
        return _one_member(results, chosen[0], epochs, marker)

    swept = swept_axes(results)
    if color_by is None:
        color_by = (primary_axes(results) or [None])[0]
    if color_by is not None:
        check_param(results, color_by)
    fig, axes = figure((9.0, 6.5), 2, 2, sharex=True, sharey="row")
    color_of, explained = _color_map(results, color_by) if color_by else ((lambda v: OKABE_ITO[0]), [])
    alpha = 0.9 if len(chosen) <= 12 else 0.7
    for m in chosen:
        color = color_of(m["hparams"].get(color_by)) if color_by else OKABE_ITO[0]
        for r, metric in enumerate(("loss", "accuracy")):
            for c, split in enumerate(("train", "val")):
                axes[r, c].plot(epochs, _curve(results, f"{split}_{metric}", m["index"]), color=color,
                                linewidth=1.3, alpha=alpha, marker=marker if len(chosen) <= 12 else None,
                                markersize=3)
    for r, metric in enumerate(("loss", "accuracy")):
        axes[r, 0].set_ylabel(METRIC_LABEL[metric])
        for c, split in enumerate(("train", "val")):
            axes[r, c].set_title(f"{SPLIT_NAME[split].capitalize()} {metric}")
    for c in range(2):
        axes[1, c].set_xlabel("epoch")
    _integer_epochs(axes)
    if isinstance(explained, ScalarMappable):
        cbar = fig.colorbar(explained, ax=axes, shrink=0.9, aspect=30)
        vals = distinct(results, color_by)
        label = PARAM_LABEL.get(color_by, color_by)
        cbar.set_label(noted(label, "log scale") if color_by in LOG_AXES else label)
        if len(vals) <= 10:
            cbar.set_ticks([float(v) for v in vals], labels=[fmt(v) for v in vals])
            cbar.ax.yaxis.set_minor_formatter(NullFormatter())
            cbar.ax.minorticks_off()
    elif explained:
        handles = [Line2D([], [], color=col, linewidth=2, label=lab) for lab, col in explained]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
                   title=PARAM_LABEL.get(color_by, color_by))
    by = f", coloured by {PARAM_TITLE.get(color_by, color_by)}" if color_by else ""
    extra = [a for a in swept if a != color_by]
    same = f"\nlines of one colour differ in {', '.join(PARAM_TITLE.get(a, a) for a in extra)}" if extra else ""
    fig.suptitle(f"Learning curves of {len(chosen)} members{by}\n{context(results)}{same}")
    return fig
