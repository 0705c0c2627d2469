"""A metric against one swept setting, replicates (seeds, folds) summarised as means with 95 % intervals."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib import transforms
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from jaxmlp import stats
from jaxmlp.results import Results
from jaxmlp.values import REPLICATES, check_param, key, member_values, sort_key, swept_axes

from jaxmlp.plots.axes import context, folds_of, hue_label, interval_note, legend, set_axis
from jaxmlp.plots.style import (METRIC_LABEL, METRIC_TITLE, PARAM_TITLE, SPLIT_COLOR, SPLIT_NAME, SPLIT_STYLE,
                                figure, hue_colors, styled)


def summary(results: Results, param: str, values: np.ndarray, hue_axes: Sequence[str],
            folds: int = 0) -> dict[tuple, list[tuple[Any, stats.Interval]]]:
    """{hue values: [(x value, interval of the mean), ...]}: members grouped by their hue settings and
    `param`, pooled over everything else (the replicate axes); non-finite values are counted out."""
    groups: dict[tuple, dict[Any, list[float]]] = {}
    for m, v in zip(results.members, values):
        hp = m["hparams"]
        hue = tuple(key(hp.get(a)) for a in hue_axes)
        groups.setdefault(hue, {}).setdefault(key(hp.get(param)), []).append(float(v))
    out = {}
    for hue in sorted(groups, key=lambda h: [sort_key(x) for x in h]):
        xs = sorted(groups[hue], key=sort_key)
        out[hue] = [(x, stats.mean_interval(groups[hue][x], folds=folds)) for x in xs]
    return out


def _over(results: Results, param: str) -> list[str]:
    return [a for a in REPLICATES if a in swept_axes(results) and a != param]


MAX_HUES = 24   # other settings' combinations drawn as lines of their own; beyond: points by split


@styled
def metric_vs_param(results: Results, param: str, metric: str = "accuracy",
                    splits: Sequence[str] = ("val", "test"), ax: Axes | None = None) -> Axes:
    """Final `metric` of the members against `param`, one line per split (and per value of any other
    swept setting). Seeds and folds other than `param` are summarised as means with 95 % confidence
    intervals (:func:`jaxmlp.stats.mean_interval`: t, a bootstrap for many skewed values, corrected for
    the dependence of folds); the title says which and how many members each point rests on.

    `metric` is ``accuracy`` (%), ``loss``, ``accuracy_gap`` or ``loss_gap`` (see :func:`member_values`;
    a gap has no split). Returns the Axes drawn on (a new 6 x 4 in figure when `ax` is None).
    """
    check_param(results, param)
    if ax is None:
        ax = figure((6.0, 4.0))[1][0, 0]
    swept = swept_axes(results)
    over = _over(results, param)
    hue_axes = [a for a in swept if a not in REPLICATES and a != param]
    splits = [None] if metric.endswith("_gap") else list(splits)
    to_x = set_axis(ax, results, param)
    n_lines = 0
    per_split = {s: summary(results, param, member_values(results, metric, s or "test"), hue_axes,
                            folds_of(results, over)) for s in splits}
    hues = list(next(iter(per_split.values())))
    colors = hue_colors(len(hues))
    # Sampled points (or a large grid): one colour and legend entry per other setting would be one per
    # member, unreadable and slow to lay out; they are drawn as points coloured by split instead.
    many = len(hues) > MAX_HUES
    for h, hue in enumerate(hues):
        for s in splits:
            rows = per_split[s][hue]
            x = [to_x(r[0]) for r in rows]
            mean = [ci.mean for _, ci in rows]
            ls, marker = SPLIT_STYLE.get(s, ("-", "o"))
            # Colour tells the other swept setting apart; with none, it tells the splits apart.
            color = colors[h] if (hue_axes and not many) or s is None else SPLIT_COLOR[s]
            label = ", ".join(p for p in (SPLIT_NAME.get(s, "") if len(splits) > 1 else "",
                                          "" if many else hue_label(hue_axes, hue)) if p) or None
            if many and h > 0:
                label = None
            style = dict(color=color, linestyle="none" if many else ls, marker=marker, label=label,
                         markerfacecolor="white" if s == "val" else color)
            if over:
                # Interval ends as distances below and above the mean (a bootstrap's may differ); a point
                # of one member has no interval: NaN draws no bar there.
                yerr = [[ci.mean - ci.low for _, ci in rows], [ci.high - ci.mean for _, ci in rows]]
                drawn = ax.errorbar(x, mean, yerr=yerr, **style)
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
            n_lines += 1 if not many or h == 0 else 0
    # Diverged members have no number to average: drawn apart, as crosses along the bottom, and counted.
    diverged = [to_x(key(m["hparams"].get(param))) for m in results.members if m.get("diverged")]
    if diverged:
        ax.plot(diverged, [0.03] * len(diverged), linestyle="none", marker="x", color="#D55E00",
                transform=ax.get_xaxis_transform(), label="diverged", clip_on=False)
    if metric.endswith("_gap"):
        ax.axhline(0.0, color="0.4", linewidth=0.8, zorder=0)
    ax.set_ylabel(METRIC_LABEL[metric])
    note = interval_note(results, over, [ci for by_hue in per_split.values() for rows in by_hue.values()
                                         for _, ci in rows])
    if diverged:
        note = (note + "; " if note else "") + f"{len(diverged)} diverged member(s) left out (× at the bottom)"
    title = f"{METRIC_TITLE[metric]} vs {PARAM_TITLE.get(param, param)}"
    ax.set_title(f"{title}\n{context(results)}" + (f"\n{note}" if note else ""))
    if n_lines > 1:
        legend(ax, n_lines)
    return ax


@styled
def gap_vs_param(results: Results, param: str) -> Figure:
    """The generalisation gap against `param`: train minus validation accuracy (top) and validation
    minus train loss (bottom), at the epoch used for testing, with 95 % intervals over seeds and folds;
    needs history.jsonl."""
    fig, axes = figure((6.0, 6.0), 2, 1, sharex=True)
    top, bottom = axes[0, 0], axes[1, 0]
    metric_vs_param(results, param, "accuracy_gap", ax=top)
    metric_vs_param(results, param, "loss_gap", ax=bottom)
    note = top.get_title().split("\n")[2:]   # the interval note of the panel, for the figure's title
    top.set_title(f"Train − validation gap vs {PARAM_TITLE.get(param, param)} (epoch used for testing)\n"
                  f"{context(results)}" + "".join(f"\n{line}" for line in note))
    bottom.set_title("")
    if bottom.get_legend() is not None:  # the same lines as above: one legend is enough
        bottom.get_legend().remove()
    top.set_xlabel("")
    top.tick_params(labelbottom=False)
    return fig
