"""Comparison figures of a run, drawn from its files alone (``results.json`` and ``history.jsonl``).

:func:`plot_run` reads a run directory and writes ``plots/*.png`` into it; ``jaxmlp plot RUN_DIR`` and
the end of every sweep call it. The pieces it composes take a :class:`~jaxmlp.results.Results` and return
the Axes or Figure, so experiments can reuse them:

- :func:`metric_vs_param`: final validation/test accuracy or loss (or the train-validation gap) against
  one hyperparameter; seed and fold axes become mean ± std error bars, other swept axes one line each.
- :func:`gap_vs_param`: the train-validation gap in accuracy and in loss against one hyperparameter.
- :func:`learning_curves`: train and validation loss/accuracy per epoch for every member, coloured by
  one swept setting (with a colorbar for numbers, a legend for names).
- :func:`heatmap`: one metric over a grid of two swept settings, values written in the cells.

Figures are built on matplotlib's Agg canvas directly (no pyplot, no display, no global state), with
colour-blind-safe colours (the Okabe-Ito cycle, viridis) and sized to be read at about 6 x 4 in, 120 dpi.
Accuracies are shown in percent, losses in nats (mean cross-entropy).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib import colors as mcolors
from matplotlib import transforms
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullFormatter

from jaxmlp.errors import UsageError
from jaxmlp.results import Results

DPI = 120
# Okabe & Ito (2008), reordered so that the first colours are the most distinct on white; yellow last but one.
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
SPLIT_COLOR = {"train": OKABE_ITO[0], "val": OKABE_ITO[1], "test": OKABE_ITO[2]}
SPLIT_STYLE = {"train": ("-", "o"), "val": ("--", "s"), "test": ("-", "o")}
SPLIT_NAME = {"train": "train", "val": "validation", "test": "test"}

REPLICATES = ("seed", "fold")          # axes that repeat an experiment: summarised as mean ± std
LOG_AXES = ("l1", "l2", "lr")          # spanning decades: log x axis (symlog when 0 is among the values)
METRICS = ("accuracy", "loss", "accuracy_gap", "loss_gap")

PARAM_LABEL = {
    "dropout": "dropout rate (fraction of hidden units dropped)",
    "l1": r"L1 penalty strength $\lambda_1$",
    "l2": r"L2 penalty strength $\lambda_2$",
    "lr": "learning rate",
    "seed": "random seed",
    "fold": "cross-validation fold",
    "batch_size": "batch size (samples)",
    "hidden": "hidden layer widths (units)",
    "optimizer": "optimizer",
    "activation": "activation",
    "arch": "architecture",
    "dataset": "dataset",
    "batch_norm": "batch normalisation",
}
PARAM_TITLE = {"dropout": "dropout rate", "l1": r"L1 strength $\lambda_1$", "l2": r"L2 strength $\lambda_2$",
               "lr": "learning rate", "batch_size": "batch size", "hidden": "hidden widths",
               "batch_norm": "batch norm", "arch": "architecture"}
PARAM_SHORT = {"l1": r"$\lambda_1$", "l2": r"$\lambda_2$", "batch_size": "batch", "batch_norm": "BN"}
METRIC_LABEL = {
    "accuracy": "accuracy (%)",
    "loss": "cross-entropy loss (nats)",
    "accuracy_gap": "train − val accuracy (% points)",
    "loss_gap": "val − train loss (nats)",
}
METRIC_TITLE = {"accuracy": "Final accuracy", "loss": "Final loss", "accuracy_gap": "Train − validation accuracy",
                "loss_gap": "Validation − train loss"}

# Viridis without its palest yellows, which thin lines on white would hide.
LINE_CMAP = mcolors.ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.88, 256)), "viridis_lines")

STYLE = {
    "font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 8.5, "legend.framealpha": 0.9, "figure.titlesize": 11,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=OKABE_ITO), "image.cmap": "viridis",
    "lines.linewidth": 1.6, "lines.markersize": 5, "errorbar.capsize": 3,
    "figure.dpi": DPI, "savefig.dpi": DPI,
}


def _styled(fn: Callable) -> Callable:
    """Apply :data:`STYLE` while `fn` creates artists (rcParams are read at creation), without changing
    the caller's global matplotlib settings."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def _figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Figure, np.ndarray]:
    # A bare Figure on an Agg canvas: no pyplot figure manager, so nothing leaks between calls.
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


# ---- what a run swept ----------------------------------------------------------------------------------

def _key(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _sort_key(v: Any) -> tuple:
    return (0, float(v), "") if _is_number(v) else (1, 0.0, str(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)


def _values(results: Results, param: str) -> list[Any]:
    """The distinct values `param` takes over the members, sorted."""
    return sorted({_key(m["hparams"].get(param)) for m in results.members}, key=_sort_key)


def swept_axes(results: Results) -> list[str]:
    """The settings that take more than one value across the members (the sweep's axes), in the order
    of the members' settings: group settings, then dropout, l1, l2, lr, seed, fold."""
    keys = list(dict.fromkeys(k for m in results.members for k in m["hparams"]))
    return [k for k in keys if len(_values(results, k)) > 1]


def primary_axes(results: Results) -> list[str]:
    """The axes figures are drawn against: the swept settings other than seed and fold, or (when a run
    swept only seeds or folds) those."""
    swept = swept_axes(results)
    return [a for a in swept if a not in REPLICATES] or swept


def _check_param(results: Results, param: str) -> None:
    if not results.members or param not in results.members[0]["hparams"]:
        known = ", ".join(results.members[0]["hparams"]) if results.members else "none"
        raise UsageError(f"{param!r} is not a setting of this run's members; settings: {known}")


def _numeric(results: Results, param: str) -> bool:
    return all(_is_number(v) for v in _values(results, param))


# ---- per-member numbers -----------------------------------------------------------------------------------

def _at(line: dict[str, Any] | None, key: str, index: int) -> float | None:
    """Member `index`'s `key` in a history line (None: no such line, or the member had stopped)."""
    vals = line.get(key) if line else None
    return vals[index] if vals is not None and index < len(vals) else None


def _tested_lines(results: Results) -> list[dict[str, Any] | None]:
    """Per member, the history line of the epoch whose parameters were tested: the best epoch with early
    stopping, else the last one it trained (as :func:`jaxmlp.members.member_records` chooses)."""
    by_epoch = {line.get("epoch"): line for line in results.history}
    early = results.config.get("patience", 0) > 0
    return [by_epoch.get(m["best_epoch"] if early else m["epochs_run"]) for m in results.members]


def member_values(results: Results, metric: str = "accuracy", split: str = "test") -> np.ndarray:
    """One number per member (in ``results.members`` order; NaN where unknown).

    `metric` is ``accuracy`` (in %), ``loss``, ``accuracy_gap`` (train minus validation accuracy, in
    percentage points) or ``loss_gap`` (validation minus train loss); the gaps are taken at the epoch
    used for testing and ignore `split`. `split` is ``val`` and ``test`` (from results.json) or ``train``
    (from history.jsonl, at the epoch used for testing).
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    if split not in SPLIT_NAME:
        raise UsageError(f"unknown split {split!r}; choose train, val or test")
    out = []
    for m, line in zip(results.members, _tested_lines(results)):
        i = m["index"]
        if metric == "accuracy_gap":
            a, b = _at(line, "train_accuracy", i), _at(line, "val_accuracy", i)
        elif metric == "loss_gap":
            a, b = _at(line, "val_loss", i), _at(line, "train_loss", i)
        elif split == "train":
            a, b = _at(line, f"train_{metric}", i), 0.0
        else:
            a, b = (m.get(split) or {}).get(metric), 0.0
        out.append(math.nan if a is None or b is None else float(a) - float(b))
    values = np.array(out, dtype=float)
    return values * 100.0 if metric.startswith("accuracy") else values


def _mean_std(vals: Sequence[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1: the spread one would expect between repeats)."""
    v = np.asarray([x for x in vals if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def _summary(results: Results, param: str, values: np.ndarray,
             hue_axes: Sequence[str]) -> dict[tuple, list[tuple[Any, float, float, int]]]:
    """{hue values: [(x value, mean, std, n), ...]}: members grouped by their hue settings and `param`,
    pooled over everything else (the replicate axes)."""
    groups: dict[tuple, dict[Any, list[float]]] = {}
    for m, v in zip(results.members, values):
        hp = m["hparams"]
        hue = tuple(_key(hp.get(a)) for a in hue_axes)
        groups.setdefault(hue, {}).setdefault(_key(hp.get(param)), []).append(float(v))
    out = {}
    for hue in sorted(groups, key=lambda h: [_sort_key(x) for x in h]):
        xs = sorted(groups[hue], key=_sort_key)
        out[hue] = [(x, *_mean_std(groups[hue][x])) for x in xs]
    return out


# ---- axes helpers ----------------------------------------------------------------------------------------

def _context(results: Results) -> str:
    """One line naming what the run held fixed: data, model, optimiser, epochs, member count."""
    c, swept = results.config, set(swept_axes(results))
    hp = results.members[0]["hparams"] if results.members else {}
    parts = []
    for k in ("dataset", "arch", "hidden", "optimizer"):
        if k in hp and k not in swept:
            parts.append(f"hidden {_fmt(_key(hp[k]))}" if k == "hidden" else _fmt(hp[k]))
    if "batch_size" in hp and "batch_size" not in swept:
        parts.append(f"batch {hp['batch_size']}")
    if "lr" in hp and "lr" not in swept:
        parts.append(f"lr {_fmt(hp['lr'])}")
    for k in ("dropout", "l1", "l2"):
        if hp.get(k) and k not in swept:
            parts.append(f"{k} {_fmt(hp[k])}")
    if c.get("train_fraction", 1.0) < 1.0:
        parts.append(f"{c['train_fraction']:.0%} of training set")
    if c.get("folds"):
        parts.append(f"{c['folds']}-fold CV")
    if c.get("epochs"):
        parts.append(f"{c['epochs']} epochs" + (f", patience {c['patience']}" if c.get("patience") else ""))
    parts.append(f"{len(results.members)} member{'s' if len(results.members) != 1 else ''}")
    return " · ".join(parts)


def _over_note(results: Results, over: Sequence[str]) -> str:
    if not over:
        return ""
    counts = " × ".join(f"{len(_values(results, a))} {a}s" for a in over)
    return f"mean ± std over {counts}"


def _set_axis(ax: Axes, results: Results, param: str, which: str = "x") -> Callable[[Any], float]:
    """Scale, ticks and label of the axis showing `param`; returns the value -> position map."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    set_scale = ax.set_xscale if which == "x" else ax.set_yscale
    set_label = ax.set_xlabel if which == "x" else ax.set_ylabel
    vals = _values(results, param)
    label = PARAM_LABEL.get(param, param)
    if not _numeric(results, param):
        # Names (hidden widths, optimizers, ...) sit at evenly spaced positions.
        pos = {v: float(i) for i, v in enumerate(vals)}
        axis.set_ticks(list(pos.values()), [_fmt(v) for v in vals])
        set_label(label)
        return lambda v: pos[_key(v)]
    nums = np.array(vals, dtype=float)
    if param in LOG_AXES and (nums > 0).any():
        positive = nums[nums > 0]
        if (nums > 0).all():
            set_scale("log")
            label = _noted(label, "log scale")
        else:
            # 0 (no penalty) has no place on a log axis; symlog keeps it, linear below the smallest λ.
            set_scale("symlog", linthresh=float(positive.min()), linscale=0.6)
            label = _noted(label, "log scale, 0 at left")
    elif param == "batch_size" and (nums > 0).all():
        set_scale("log", base=2)
        label = _noted(label, "log₂ scale")
    if len(vals) <= 10:
        axis.set_ticks(list(nums), [_fmt(v) for v in vals])
        axis.set_minor_formatter(NullFormatter())
    set_label(label)
    return float


def _noted(label: str, note: str) -> str:
    """``"batch size (samples)"`` + ``"log₂ scale"`` -> ``"batch size (samples, log₂ scale)"``."""
    return f"{label[:-1]}, {note})" if label.endswith(")") else f"{label} ({note})"


def _legend(ax: Axes, n: int, title: str | None = None) -> None:
    if n <= 6:
        ax.legend(loc="best", title=title)
    else:  # many lines: outside, to the right, so they hide no data
        legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title=title, fontsize=7.5)
        # Grow the figure by the legend's width (and to its height), so that constrained layout does not
        # squeeze the axes to make room for it (with ~40 long labels it squeezed them to nothing).
        fig, box = ax.figure, legend.get_window_extent()
        fig.set_figwidth(fig.get_figwidth() + box.width / fig.dpi)
        fig.set_figheight(max(fig.get_figheight(), box.height / fig.dpi + 1.0))


def _hue_label(hue_axes: Sequence[str], hue: tuple) -> str:
    return ", ".join(f"{PARAM_SHORT.get(a, a)}={_fmt(v)}" for a, v in zip(hue_axes, hue))


def _hue_colors(n: int) -> list[str]:
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    return [mcolors.to_hex(LINE_CMAP(x)) for x in np.linspace(0.0, 1.0, n)]


# ---- figures ---------------------------------------------------------------------------------------------

@_styled
def metric_vs_param(results: Results, param: str, metric: str = "accuracy",
                    splits: Sequence[str] = ("val", "test"), ax: Axes | None = None) -> Axes:
    """Final `metric` of the members against `param`, one line per split (and per value of any other
    swept setting). Seeds and folds other than `param` are summarised as mean ± std (ddof=1) error bars.

    `metric` is ``accuracy`` (%), ``loss``, ``accuracy_gap`` or ``loss_gap`` (see :func:`member_values`;
    a gap has no split). Returns the Axes drawn on (a new 6 x 4 in figure when `ax` is None).
    """
    _check_param(results, param)
    if ax is None:
        ax = _figure((6.0, 4.0))[1][0, 0]
    swept = swept_axes(results)
    over = [a for a in REPLICATES if a in swept and a != param]
    hue_axes = [a for a in swept if a not in REPLICATES and a != param]
    splits = [None] if metric.endswith("_gap") else list(splits)
    to_x = _set_axis(ax, results, param)
    n_lines = 0
    per_split = {s: _summary(results, param, member_values(results, metric, s or "test"), hue_axes)
                 for s in splits}
    hues = list(next(iter(per_split.values())))
    colors = _hue_colors(len(hues))
    for h, hue in enumerate(hues):
        for s in splits:
            rows = per_split[s][hue]
            x = [to_x(r[0]) for r in rows]
            mean = [r[1] for r in rows]
            ls, marker = SPLIT_STYLE.get(s, ("-", "o"))
            # Colour tells the other swept setting apart; with none, it tells the splits apart.
            color = colors[h] if hue_axes or s is None else SPLIT_COLOR[s]
            label = ", ".join(p for p in (SPLIT_NAME.get(s, "") if len(splits) > 1 else "",
                                          _hue_label(hue_axes, hue)) if p) or None
            style = dict(color=color, linestyle=ls, marker=marker, label=label,
                         markerfacecolor="white" if s == "val" else color)
            if over:
                drawn = ax.errorbar(x, mean, yerr=[r[2] for r in rows], **style)
                artists = [drawn.lines[0], *drawn.lines[1], *drawn.lines[2]]
            else:
                artists = ax.plot(x, mean, **style)
            if len(splits) > 1:
                # Shift the splits a few points apart so that coinciding error bars stay visible (after
                # drawing in data coordinates, which the axis limits follow).
                shift = 3.0 * (splits.index(s) - (len(splits) - 1) / 2)
                offset = transforms.offset_copy(ax.transData, ax.figure, x=shift, units="points")
                for artist in artists:
                    if artist is not None:
                        artist.set_transform(offset)
            n_lines += 1
    if metric.endswith("_gap"):
        ax.axhline(0.0, color="0.4", linewidth=0.8, zorder=0)
    ax.set_ylabel(METRIC_LABEL[metric])
    note = _over_note(results, over)
    title = f"{METRIC_TITLE[metric]} vs {PARAM_TITLE.get(param, param)}"
    ax.set_title(f"{title}\n{_context(results)}" + (f"\n{note}" if note else ""))
    if n_lines > 1:
        _legend(ax, n_lines)
    return ax


@_styled
def gap_vs_param(results: Results, param: str) -> Figure:
    """The generalisation gap against `param`: train minus validation accuracy (top) and validation
    minus train loss (bottom), at the epoch used for testing; needs history.jsonl."""
    fig, axes = _figure((6.0, 6.0), 2, 1, sharex=True)
    top, bottom = axes[0, 0], axes[1, 0]
    metric_vs_param(results, param, "accuracy_gap", ax=top)
    metric_vs_param(results, param, "loss_gap", ax=bottom)
    over = [a for a in REPLICATES if a in swept_axes(results) and a != param]
    note = _over_note(results, over)
    top.set_title(f"Train − validation gap vs {PARAM_TITLE.get(param, param)} (epoch used for testing)\n"
                  f"{_context(results)}" + (f"\n{note}" if note else ""))
    bottom.set_title("")
    if bottom.get_legend() is not None:  # the same lines as above: one legend is enough
        bottom.get_legend().remove()
    top.set_xlabel("")
    top.tick_params(labelbottom=False)
    return fig


def _color_map(results: Results, param: str) -> tuple[Callable[[Any], Any], Any]:
    """Member value -> colour, and what explains it: a ScalarMappable (numbers) or [(label, colour)]."""
    vals = _values(results, param)
    if _numeric(results, param) and param not in REPLICATES and len(vals) > 1:
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
    colors = dict(zip(vals, _hue_colors(len(vals))))
    return (lambda v: colors[_key(v)]), [(_fmt(v), colors[v]) for v in vals]


def _curve(results: Results, key: str, index: int) -> np.ndarray:
    y = np.array([math.nan if (v := _at(line, key, index)) is None else float(v) for line in results.history])
    return y * 100.0 if key.endswith("accuracy") else y


@_styled
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
        m = chosen[0]
        fig, axes = _figure((9.0, 3.8), 1, 2)
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
        fig.suptitle(f"Learning curves of member {m['index']}{tested}\n{_context(results)}")
        _integer_epochs(axes)
        return fig

    swept = swept_axes(results)
    if color_by is None:
        color_by = (primary_axes(results) or [None])[0]
    if color_by is not None:
        _check_param(results, color_by)
    fig, axes = _figure((9.0, 6.5), 2, 2, sharex=True, sharey="row")
    color_of, legend = _color_map(results, color_by) if color_by else ((lambda v: OKABE_ITO[0]), [])
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
    if isinstance(legend, ScalarMappable):
        cbar = fig.colorbar(legend, ax=axes, shrink=0.9, aspect=30)
        vals = _values(results, color_by)
        label = PARAM_LABEL.get(color_by, color_by)
        cbar.set_label(_noted(label, "log scale") if color_by in LOG_AXES else label)
        if len(vals) <= 10:
            cbar.set_ticks([float(v) for v in vals], labels=[_fmt(v) for v in vals])
            cbar.ax.yaxis.set_minor_formatter(NullFormatter())
            cbar.ax.minorticks_off()
    elif legend:
        handles = [Line2D([], [], color=col, linewidth=2, label=lab) for lab, col in legend]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6),
                   title=PARAM_LABEL.get(color_by, color_by))
    by = f", coloured by {PARAM_TITLE.get(color_by, color_by)}" if color_by else ""
    extra = [a for a in swept if a != color_by]
    same = f"\nlines of one colour differ in {', '.join(PARAM_TITLE.get(a, a) for a in extra)}" if extra else ""
    fig.suptitle(f"Learning curves of {len(chosen)} members{by}\n{_context(results)}{same}")
    return fig


def _integer_epochs(axes: np.ndarray) -> None:
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


@_styled
def heatmap(results: Results, x: str, y: str, metric: str = "accuracy", split: str = "test",
            ax: Axes | None = None) -> Axes:
    """`split` `metric` over the grid of `x` (columns) by `y` (rows), each cell the mean over the members
    there (over seeds, folds and any other swept setting), written in the cell with ± std when there are
    several. Cells are evenly spaced whatever the values; the colour scale is viridis, brighter = better."""
    _check_param(results, x)
    _check_param(results, y)
    if ax is None:
        ax = _figure((6.0, 4.6))[1][0, 0]
    values = member_values(results, metric, split)
    xv, yv = _values(results, x), _values(results, y)
    cells: dict[tuple[int, int], list[float]] = {}
    for m, v in zip(results.members, values):
        cells.setdefault((yv.index(_key(m["hparams"].get(y))), xv.index(_key(m["hparams"].get(x)))), []).append(v)
    mean = np.full((len(yv), len(xv)), np.nan)
    std, count = np.zeros_like(mean), np.zeros(mean.shape, int)
    for (r, c), vals in cells.items():
        mean[r, c], std[r, c], count[r, c] = _mean_std(vals)
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
    for (r, c), n in np.ndenumerate(count):
        if n == 0 or not math.isfinite(mean[r, c]):
            continue
        red, green, blue, _ = cmap(norm(mean[r, c]))
        ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        text = f"{mean[r, c]:.{digits}f}" + (f"\n±{std[r, c]:.{digits}f}" if n > 1 else "")
        ax.text(c, r, text, ha="center", va="center", color=ink, fontsize=size)
    ax.set_xticks(range(len(xv)), [_fmt(v) for v in xv])
    ax.set_yticks(range(len(yv)), [_fmt(v) for v in yv])
    ax.set_xlabel(PARAM_LABEL.get(x, x))
    ax.set_ylabel(PARAM_LABEL.get(y, y))
    name = f"{SPLIT_NAME[split].capitalize()} {METRIC_LABEL[metric]}" if not metric.endswith("_gap") \
        else METRIC_LABEL[metric]
    ax.figure.colorbar(im, ax=ax, label=name)
    over = [a for a in swept_axes(results) if a not in (x, y)]
    note = f"\ncells: {_over_note(results, over)}" if over else ""
    ax.set_title(f"{name} over {PARAM_TITLE.get(x, x)} × {PARAM_TITLE.get(y, y)}\n{_context(results)}{note}")
    return ax


# ---- a run directory -------------------------------------------------------------------------------------

def _save(fig: Figure, path: Path) -> Path:
    # Write beside the target, then rename: a reader (a README, a browser) never sees half a PNG.
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    os.replace(tmp, path)
    return path


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
    grid_axes = [a for a in axes if a not in REPLICATES]
    for a, b in itertools.combinations(grid_axes, 2):
        written.append(_save(heatmap(res, a, b).figure, out / f"heatmap_{a}_{b}_test_accuracy.png"))
    return written
