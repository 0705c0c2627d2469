"""Population-based training, drawn from a run's files: each member's hyperparameters epoch by epoch, and
whose training its final weights descend from (from ``results.json``'s events: :mod:`jaxmlp.search.pbt`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from jaxmlp.errors import UsageError
from jaxmlp.results import Results
from jaxmlp.search.pbt import explored_names, final_hparams, lineage, pbt_events, schedules
from jaxmlp.values import fmt

from jaxmlp.plots.axes import context
from jaxmlp.plots.style import LINE_CMAP, LOG_AXES, PARAM_TITLE, figure, noted, styled

BEST = "#000000"   # the best member's line and lineage (Okabe-Ito black)


def _final_accuracy(results: Results) -> np.ndarray:
    """Each member's final validation accuracy in percent (NaN where it has none)."""
    return np.array([np.nan if (m.get("val") or {}).get("accuracy") is None else 100.0 * m["val"]["accuracy"]
                     for m in results.members])


@styled
def pbt_schedules(results: Results, names: Sequence[str] | None = None, *, show_lineage: bool = True) -> Figure:
    """One panel per explored hyperparameter (log axis for those the table puts on one, e.g. ``lr``): each
    member's value over the epochs as a step line coloured by its final validation accuracy, the best
    member in black, a marker where an exploit gave a member new values. With `show_lineage`, a last
    panel shows the members against the epochs, an arrow for each exploit (from the member copied to the
    one replaced) and the best member's ancestry in black. The title notes the best member's final values.
    """
    if not results.members:
        raise UsageError("this run lists no members; there is nothing to plot")
    names = list(names) if names is not None else explored_names(results)
    if not names:
        raise UsageError("this run explored no hyperparameter (no PBT events, no swept values); "
                         "nothing to draw")
    epochs = len(results.history) or max(int(m.get("epochs_run") or 0) for m in results.members)
    sched, events = schedules(results, names), pbt_events(results)
    accuracy = _final_accuracy(results)
    finite = accuracy[np.isfinite(accuracy)]
    best = results.best()["index"] if finite.size else None
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    norm = mcolors.Normalize(lo, hi if hi > lo else lo + 1.0)
    color = {m["index"]: (BEST if m["index"] == best else LINE_CMAP(norm(a)) if np.isfinite(a) else "0.6")
             for m, a in zip(results.members, accuracy)}
    order = sorted(sched, key=lambda i: i == best)   # the best member drawn last, on top

    rows = len(names) + (1 if show_lineage else 0)
    fig, axes = figure((8.0, 2.6 * len(names) + (2.0 + 0.12 * len(results.members) if show_lineage else 0)),
                       rows, 1, sharex=True)
    axes = axes[:, 0]
    for ax, name in zip(axes, names):
        for i in order:
            xs = [e for e, _ in sched[i]] + [epochs]
            ys = [v[name] for _, v in sched[i]] + [sched[i][-1][1][name]]
            ax.plot(xs, ys, drawstyle="steps-post", color=color[i], linewidth=2.2 if i == best else 1.2,
                    alpha=1.0 if i == best else 0.8, zorder=3 if i == best else 2)
        jumps = [(e["epoch"], e["hparams"][name]) for e in events if name in e["hparams"]]
        if jumps:
            ax.plot(*zip(*jumps), linestyle="none", marker="v", markersize=5, markerfacecolor="white",
                    markeredgecolor="0.2", zorder=4, label="exploit: copied, then explored")
            ax.legend(loc="best")
        label = PARAM_TITLE.get(name, name)
        values = [v[name] for s in sched.values() for _, v in s if v[name] is not None]
        if name in LOG_AXES and values and min(values) > 0:
            ax.set_yscale("log")
            label = noted(label, "log scale")
        ax.set_ylabel(label)
    if show_lineage:
        _lineage_panel(axes[-1], results, events, color, best, epochs)
    axes[-1].set_xlabel("epoch (values in effect after it)")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlim(0, epochs)
    if finite.size:
        fig.colorbar(ScalarMappable(norm=norm, cmap=LINE_CMAP), ax=list(axes[:len(names)]), shrink=0.9, aspect=40,
                     label="final validation accuracy (%)")
    title = f"Population-based training: {len(results.members)} members, {len(events)} exploits"
    if best is not None:
        end = ", ".join(f"{n} {fmt(v)}" for n, v in final_hparams(results, names)[best].items())
        title += f"\nbest member {best} (validation {accuracy[best]:.1f} %) ends with {end}"
    fig.suptitle(f"{title}\n{context(results)}")
    return fig


def _lineage_panel(ax, results: Results, events, color, best: int | None, epochs: int) -> None:
    """Members (rows) against epochs: a thin line per member, an arrow per exploit, the best member's
    ancestry drawn over them in black."""
    for m in results.members:
        i = m["index"]
        ax.plot([0, epochs], [i, i], color=color[i] if i != best else "0.6", linewidth=0.8, alpha=0.6)
    at_epoch: dict[int, list[dict]] = {}
    for e in events:
        at_epoch.setdefault(e["epoch"], []).append(e)
    for epoch, batch in at_epoch.items():
        # The exploits of one epoch side by side, so that two copies of one member do not hide each other.
        width = min(0.3, 0.08 * (len(batch) - 1))
        for k, e in enumerate(batch):
            x = epoch - width / 2 + (width * k / (len(batch) - 1) if len(batch) > 1 else 0.0)
            ax.annotate("", xy=(x, e["member"]), xytext=(x, e["from"]),
                        arrowprops=dict(arrowstyle="->", color="0.35", linewidth=0.9, shrinkA=1, shrinkB=1))
    if best is not None:
        segments = lineage(results)[best]
        for k, (start, end, owner) in enumerate(segments):
            ax.plot([start, end], [owner, owner], color=BEST, linewidth=2.4, solid_capstyle="butt")
            if k + 1 < len(segments):
                ax.plot([end, end], [owner, segments[k + 1][2]], color=BEST, linewidth=2.4)
    handles = [Line2D([], [], color="0.35", marker=r"$\rightarrow$", linestyle="none", markersize=10,
                      label="exploit (from → to)")]
    if best is not None:
        handles.append(Line2D([], [], color=BEST, linewidth=2.4, label=f"ancestry of best member {best}"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7.5)
    ax.set_ylabel("member")
    ax.set_ylim(-0.5, len(results.members) - 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.invert_yaxis()
    ax.grid(False)
