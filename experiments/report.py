"""What the reference studies report: numbers pooled over seeds, tables, figures in jaxmlp's style, the
environment, and each study's summary.md / summary.json. Intervals and means come from jaxmlp.stats."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from jaxmlp.results import Results


def show(v: Any) -> str:
    """A setting as summary text: layer widths as 512,64; long number lists as their count and ends."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, int) for x in v) and isinstance(v, tuple):
        return ",".join(map(str, v))
    if isinstance(v, (list, tuple)) and len(v) > 4 and all(isinstance(x, (int, float)) for x in v):
        return f"{len(v)} values {show(v[0])} … {show(v[-1])}"
    if isinstance(v, (list, tuple)):
        return "[" + "; ".join(show(x) for x in v) + "]"
    return str(v)


def cell(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:g}"
    return str(v)


def percent(fraction: float) -> str:
    """A share of the training set as text: 0.05 -> "5 %", 1.0 -> "100 %"."""
    return f"{100 * fraction:.3g} %"


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> str:
    """Rows of strings as an aligned text table (what the terminal shows; as ``jaxmlp compare`` prints)."""
    from jaxmlp.compare import text_table

    return text_table(headers, rows, title)


# ---- numbers pooled over seeds ------------------------------------------------------------------------

def pooled(results: "Results", by: Sequence[str], metric: str = "accuracy", split: str = "test",
           where: dict[str, Any] | None = None) -> dict[tuple, tuple[float, float, int]]:
    """{values of the settings `by`: (mean, std, n)} of a per-member number, pooled over everything else
    (seeds, folds). `metric`/`split` are those of :func:`jaxmlp.plots.member_values` (accuracy in %,
    gaps in percentage points); `where` keeps only members with these settings. std has ddof=1."""
    from jaxmlp.plots import member_values

    return pool_values(results, member_values(results, metric, split), by, where)


def pool_values(results: "Results", values: Sequence[float], by: Sequence[str],
                where: dict[str, Any] | None = None) -> dict[tuple, tuple[float, float, int]]:
    """Like :func:`pooled` for any per-member numbers `values` (in ``results.members`` order)."""
    groups: dict[tuple, list[float]] = {}
    for m, v in zip(results.members, values):
        hp = m["hparams"]
        if where and any(hp.get(k) != w for k, w in where.items()):
            continue
        groups.setdefault(tuple(hp.get(k) for k in by), []).append(float(v))
    return {k: mean_std(groups[k]) for k in sorted(groups, key=lambda k: [_order(x) for x in k])}


def _order(v: Any) -> tuple:
    # Numbers by value, then everything else (names, hidden widths) by its text.
    return (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v))


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the finite values
    (:func:`jaxmlp.stats.mean_sd`)."""
    from jaxmlp.stats import mean_sd

    return mean_sd(values)


def pm(stats: tuple[float, float, int], digits: int = 2) -> str:
    """``mean ± std`` (just the mean for a single value)."""
    mean, std, n = stats
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")


def pm_ci(stats: tuple[float, float, int], digits: int = 2, folds: int = 0) -> str:
    """``mean [low, high]``: the mean and its 95 % t interval from a (mean, std, n) summary
    (:func:`jaxmlp.stats.t_interval`; Nadeau-Bengio corrected with `folds`); just the mean for one value."""
    from jaxmlp.stats import t_interval

    mean, std, n = stats
    if not math.isfinite(mean):
        return "–"
    if n < 2:
        return f"{mean:.{digits}f}"
    low, high = t_interval(mean, std, n, folds=folds)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def best_by(stats: dict[tuple, tuple[float, float, int]], higher: bool = True) -> tuple:
    """The key with the best mean (highest, or lowest with ``higher=False``); ties go to the first key."""
    sign = 1.0 if higher else -1.0
    finite = {k: v for k, v in stats.items() if math.isfinite(v[0])}
    if not finite:
        raise ValueError("no finite values to choose the best from")
    return max(finite, key=lambda k: sign * finite[k][0])


# ---- which values are not significantly worse than the best ------------------------------------------

def relabel(runs: Sequence["Results"], name: str, label: Any, keep: Sequence[str] = ("seed", "fold")) -> "Results":
    """The members of `runs` (one or several sweeps) as one Results whose settings are only `keep` (those
    a member has) and the setting `name` = ``label(hparams)``: combinations of settings, or members of
    different sweeps, become the values of one setting that :func:`not_worse` compares, paired on `keep`.
    Only the members' own numbers (val/test) stay meaningful: history indices are those of each sweep."""
    from jaxmlp.results import Results

    members = [{**m, "hparams": {name: label(m["hparams"]),
                                 **{k: m["hparams"][k] for k in keep if k in m["hparams"]}}}
               for res in runs for m in res.members]
    first = runs[0]
    return Results(first.config, members, first.history, first.timing, first.versions, first.devices)


def not_worse(results: "Results", by: str, *, where: dict[str, Any] | None = None, metric: str = "accuracy",
              split: str = "test", power_diff: float | None = None) -> dict[str, Any]:
    """Which values of `by` are not significantly worse than the best on `metric` at `split`, paired over
    the seeds (and folds) of :mod:`jaxmlp.compare`, Holm-corrected: {"best", "values", "seeds",
    "statement", "power", "table"}. With one seed there is no interval and no test: the statement says
    so, "values" is None and "best" is only the highest mean."""
    from jaxmlp.compare import comparison, format_comparison, power_text, sentence
    from jaxmlp.values import fmt, is_number

    members = [m for m in results.members
               if not where or all(m["hparams"].get(k) == w for k, w in where.items())]
    seeds = len({m["hparams"].get("seed") for m in members})
    comp = comparison(results, by, metric=metric, split=split, where=where)
    out: dict[str, Any] = {"best": comp.reference, "seeds": seeds, "table": format_comparison(comp)}
    if seeds < 2:
        return {**out, "values": None, "power": "",
                "statement": f"one seed: no interval and no test, so which values are not significantly worse "
                             f"than the one with the highest {split} {metric} ({fmt(comp.reference)}) is not "
                             "known (that needs 2 or more seeds)"}
    kept = comp.not_worse()
    statement = sentence(comp)
    if not all(is_number(r["value"]) for r in comp.rows):
        # sentence() joins neighbouring values into ranges, which means nothing for names: list them.
        how = statement[statement.rindex(" ("):]
        rest = [fmt(v) for v in kept if v != comp.reference]
        statement = (f"not significantly worse than the best ({fmt(comp.reference)}): "
                     f"{', '.join(rest) if rest else 'no other value'}{how}")
    return {**out, "values": kept, "statement": statement,
            "power": power_text(comp, power_diff) if power_diff is not None else ""}


def paired_difference(a: dict[Any, float], b: dict[Any, float], what: str, digits: int = 2) -> dict[str, Any]:
    """``a - b`` over the seeds both have ({seed: number}), paired (:func:`jaxmlp.stats.paired`): {"diff",
    "low", "high", "p", "seeds", "statement"}; with one seed the statement says there is no interval."""
    from jaxmlp import stats

    seeds = sorted(set(a) & set(b))
    d = stats.paired([a[x] for x in seeds], [b[x] for x in seeds])
    text = f"{what} {d.diff:+.{digits}f} points"
    if d.n < 2:
        text += f" over {d.n} seed (one seed: no interval and no test)"
    else:
        text += (f", 95 % interval {d.low:+.{digits}f} to {d.high:+.{digits}f} (paired t over {d.n} seeds, "
                 f"p = {d.p:.2g})")
    return {"diff": d.diff, "low": d.low, "high": d.high, "p": d.p, "seeds": d.n, "statement": text}


def record_not_worse(study: Any, key: str, found: dict[str, Any], what: str) -> str:
    """Put a :func:`not_worse` result into ``study.numbers["not_worse_than_best"][key]`` (without its
    table), its table and power estimate into the summary and its statement into the printed output;
    returns the statement. `what` names the comparison in the summary."""
    study.numbers.setdefault("not_worse_than_best", {})[key] = {k: v for k, v in found.items() if k != "table"}
    if found["values"] is None:   # one seed: the table would only repeat the means
        study.text(f"**{what}**: {found['statement']}.")
    else:
        power = f"; {found['power']}" if found["power"] else ""
        study.text(f"**{what}**{power}.\n\n```\n{found['table']}\n```")
    study.printed.append(f"{key}: {found['statement']}.")
    return found["statement"]


def sparsity(variables: dict[str, Any], threshold: float = 1e-3, layer: str | None = None) -> float:
    """Fraction of weight-matrix entries with ``|w| < threshold`` (kernels only, never biases or
    batch-norm scales), over every layer or only the parameter module `layer` (e.g. ``"Dense_0"``)."""
    kernels = [np.asarray(p["kernel"]) for name, p in variables["params"].items()
               if "kernel" in p and (layer is None or name == layer)]
    if not kernels:
        raise ValueError(f"no kernel found{f' in {layer!r}' if layer else ''}")
    small = sum(int((np.abs(k) < threshold).sum()) for k in kernels)
    return small / sum(k.size for k in kernels)


# ---- figures --------------------------------------------------------------------------------------

def new_figure(width: float = 6.0, height: float = 4.0, nrows: int = 1, ncols: int = 1,
               **kw: Any) -> tuple["Figure", np.ndarray]:
    """A figure on the Agg canvas (no pyplot state) in jaxmlp's plot style; axes as a 2-D array."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jaxmlp.plots import STYLE

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def errorbar_line(ax: Any, stats: dict[tuple, tuple[float, float, int]], label: str, color: str,
                  marker: str = "o", linestyle: str = "-", hollow: bool = False, bars: str = "std") -> None:
    """Means of `stats` (keyed by 1-tuples of x values) as a line, with bars where n > 1: ± std, or with
    ``bars="ci"`` the 95 % t interval of the mean (:func:`jaxmlp.stats.t_interval`)."""
    from jaxmlp.stats import t_interval

    xs = [float(k[0]) for k in stats]
    means = [v[0] for v in stats.values()]
    if bars == "ci":
        yerr = [(mean - t_interval(mean, sd, n)[0]) for mean, sd, n in stats.values()]   # symmetric
    else:
        yerr = [v[1] for v in stats.values()]
    style = dict(color=color, marker=marker, linestyle=linestyle, label=label,
                 markerfacecolor="white" if hollow else color)
    if any(v[2] > 1 for v in stats.values()):
        ax.errorbar(xs, means, yerr=yerr, capsize=3, **style)
    else:
        ax.plot(xs, means, **style)


def integer_epochs(*axes: Any) -> None:
    """Whole-number ticks on the epoch (x) axis."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# Okabe-Ito without its yellow, which thin lines on white hide; for up to 7 categories.
LINE_COLORS = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000"]


def styled():
    """A context in which artists get jaxmlp's plot style (rcParams are read when artists are made)."""
    import matplotlib

    from jaxmlp.plots import STYLE

    return matplotlib.rc_context(STYLE)


# ---- environment ---------------------------------------------------------------------------------------

def cpu_model() -> str:
    """The host CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """jaxmlp and library versions, and the devices the sweeps ran on."""
    import jax

    from jaxmlp import __version__
    from jaxmlp.results import versions

    devices = jax.local_devices()
    kinds = ", ".join(sorted({d.device_kind for d in devices}))
    device = f"{len(devices)} × {kinds} ({devices[0].platform})"
    if devices[0].platform == "cpu":
        device += f" on {os.cpu_count()} core(s) of {cpu_model()}"
    return {"jaxmlp": __version__, "versions": ", ".join(f"{k} {v}" for k, v in versions().items()
                                                          if k != "jaxmlp"),
            "device": device, "python": platform.python_version()}


def write_summary(study: Any, wall_s: float) -> None:
    """``summary.md`` (results, figures, settings, versions, device) and ``summary.json`` (the numbers)."""
    # `study`: an experiments.common.Study (not imported here: common imports this module).
    env = environment()
    mode = "quick (`--quick`: a smoke test, not the study's result)" if study.opts.quick else "full"
    first = study.sweeps[0].results if study.sweeps else None
    source = (first.config.get("data_source") or {}).get(study.opts.dataset, "?") if first else "?"
    lines = [f"# {study.title}", "", *sum(([b, ""] for b in study.blocks), [])]
    lines += ["## Settings", "",
              f"- mode: {mode}",
              f"- dataset: {study.opts.dataset} ({source}); the whole training set here is "
              f"{study.whole:.0%} of it (stratified), minus a validation share",
              *[f"- {k}: {show(v)}" for k, v in study.settings.items()]]
    if first is not None and "lr_schedule" in first.config:
        lines += [f"- learning-rate schedule: {first.config['lr_schedule']} (jaxmlp's default unless set)"]
    if study.reduced:
        lines += [f"- reduced by --quick: {'; '.join(study.reduced)}"]
    if study.opts.epochs is not None:
        lines += [f"- epochs overridden: {study.opts.epochs} for every sweep"]
    lines += ["", "## Sweeps", "", "| sweep | members | groups | compile (s) | train (s) | wall (s) |",
              "|---|---|---|---|---|---|"]
    for s in study.sweeps:
        groups = len({tuple(sorted((k, str(v)) for k, v in m["hparams"].items()
                                   if k in ("dataset", "model", "hidden", "activation", "batch_norm",
                                            "optimizer", "batch_size")))
                      for m in s.results.members})
        lines.append(f"| [{s.name}]({s.name}/) | {len(s.results.members)} | {groups} | "
                     f"{s.results.timing.get('compile_s', math.nan):.1f} | "
                     f"{s.results.timing.get('train_s', math.nan):.1f} | {s.wall_s:.1f} |")
    lines += ["", "Each sweep folder holds results.json, results.csv, history.jsonl and plots/.", "",
              "## Environment", "",
              f"- jaxmlp {env['jaxmlp']}; {env['versions']}; Python {env['python']}",
              f"- device: {env['device']}",
              f"- study wall time: {wall_s:.1f} s", ""]
    study.out.mkdir(parents=True, exist_ok=True)
    (study.out / "summary.md").write_text("\n".join(lines))
    doc = {"study": study.name, "title": study.title, "mode": "quick" if study.opts.quick else "full",
           "dataset": study.opts.dataset, "whole_fraction": study.whole, "settings": study.settings,
           "numbers": study.numbers, "wall_s": round(wall_s, 2),
           "sweeps": {s.name: {"members": len(s.results.members), "wall_s": round(s.wall_s, 2),
                               **s.results.timing} for s in study.sweeps},
           **env}
    (study.out / "summary.json").write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (tuple, set)):
        return list(v)
    return str(v)
