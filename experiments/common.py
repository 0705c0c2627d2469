"""What every reference study shares: flags, settings per mode, sweeps into the study folder, numbers
pooled over seeds, figures, the printed table and ``summary.md``.

A study module defines ``NAME``, ``TITLE``, ``ABOUT`` (one line for the listing) and ``run(study)``,
which trains its sweeps through :meth:`Study.sweep` and describes them with :meth:`Study.table`,
:meth:`Study.figure` and :meth:`Study.text`; :func:`run_study` then writes ``summary.md`` and
``summary.json``. Study modules import jaxmlp (and so jax) only inside ``run``: listing the studies stays
fast, and the XLA host-device flag can still be set before jax starts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from jaxmlp.cli import add_process_flags, join_processes, processes_from_args
from jaxmlp.errors import UsageError
from jaxmlp.hostdevices import use_one_device_per_core

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from jaxmlp.config import SweepConfig
    from jaxmlp.results import Results

# Listing order; each is the module experiments.<name>.
STUDIES = ("dropout_sweep", "l1_l2_lambda", "l1_vs_l2_weights", "depth_and_regularizers",
           "optimizers_lr_batch", "kfold", "cnn")
DATASETS = ("fashion_mnist", "mnist")
# In --quick mode this share of the training set stands for "the whole training set" (3,000 images).
QUICK_FRACTION = 0.05
PROG = "experiments"


# ---- flags -----------------------------------------------------------------------------------------

@dataclass
class Options:
    """The flags every study takes."""

    quick: bool = False
    out: Path | None = None            # None: runs/<study>
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    train_fraction: float | None = None  # share of the training set standing for all of it (default per mode)
    epochs: int | None = None          # overrides every sweep's epoch count (tests, tiny runs)
    progress: bool = True


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; we want one line
        raise UsageError(f"{message}; see 'python -m {PROG} --help'")


def build_parser(study: str | None = None) -> argparse.ArgumentParser:
    """Flags of ``python -m experiments [NAME]`` (or of one study's own module when `study` is given)."""
    prog = f"python -m {PROG}" + (f".{study}" if study else "")
    p = _Parser(prog=prog, description="Reference studies of jaxmlp: each trains its sweeps and writes "
                                       "results, figures and summary.md to runs/<study>/.")
    if study is None:
        p.add_argument("name", nargs="?", help="study to run (omit to list them)")
        p.add_argument("--all", action="store_true", help="run every study, one after another")
    p.add_argument("--quick", action="store_true",
                   help=f"a few epochs on a {100 * QUICK_FRACTION:.0f}%% stratified subset, fewer values "
                        "(for CPU and CI)")
    p.add_argument("--out", help="output folder (default runs/<study>; with --all, the parent of each study's folder)")
    p.add_argument("--dataset", default="fashion_mnist", choices=DATASETS)
    p.add_argument("--data-dir", help="folder with the four IDX files (default: $JAXMLP_DATA_DIR, the system "
                                      "copy, then tensorflow-datasets)")
    p.add_argument("--train-fraction", type=float,
                   help="share of the training set that stands for all of it (default 1, or "
                        f"{QUICK_FRACTION} with --quick); subsets a study takes are shares of it")
    p.add_argument("--epochs", type=int, help="train every sweep for this many epochs (for tests and tiny runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_process_flags(p)
    return p


def options_from_args(args: argparse.Namespace, out: Path | None) -> Options:
    """Check the parsed flags that argparse cannot, and turn them into :class:`Options`."""
    if args.train_fraction is not None and not 0.0 < args.train_fraction <= 1.0:
        raise UsageError(f"--train-fraction must lie in (0, 1], got {args.train_fraction}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    return Options(quick=args.quick, out=out, dataset=args.dataset, data_dir=args.data_dir,
                   train_fraction=args.train_fraction, epochs=args.epochs, progress=not args.quiet)


# ---- a study while it runs -------------------------------------------------------------------------

@dataclass
class SweepRun:
    """One sweep of a study: its sub-directory (relative to the study folder), results and wall time."""

    name: str
    results: "Results"
    wall_s: float


@dataclass
class Study:
    """The running study: where it writes, its settings, its sweeps, and the pieces of its summary."""

    name: str
    title: str
    opts: Options
    out: Path = field(init=False)
    settings: dict[str, Any] = field(default_factory=dict)
    reduced: list[str] = field(default_factory=list)     # what --quick changes, for the summary
    sweeps: list[SweepRun] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)      # markdown of the summary body, in order
    printed: list[str] = field(default_factory=list)     # tables printed at the end
    numbers: dict[str, Any] = field(default_factory=dict)  # key results, also written to summary.json

    def __post_init__(self) -> None:
        self.out = Path(self.opts.out) if self.opts.out is not None else Path("runs") / self.name

    # -- settings --
    @property
    def whole(self) -> float:
        """The share of the training set that stands for all of it in this mode."""
        if self.opts.train_fraction is not None:
            return self.opts.train_fraction
        return QUICK_FRACTION if self.opts.quick else 1.0

    def choose(self, full: dict[str, Any], quick: dict[str, Any]) -> dict[str, Any]:
        """This mode's settings (`quick` overrides some of `full`); records them and what --quick changed."""
        chosen = {**full, **(quick if self.opts.quick else {})}
        if self.opts.quick:
            self.reduced += [f"{k}: {_show(quick[k])} instead of {_show(full[k])}"
                             for k in quick if k in full and quick[k] != full[k]]
        self.settings.update(chosen)
        return chosen

    def fraction(self, share: float = 1.0) -> float:
        """The train_fraction of a sweep that uses `share` of "the whole training set"."""
        return float(f"{self.whole * share:.6g}")

    def epochs(self, n: int) -> int:
        """`n`, unless --epochs overrides every sweep's epoch count."""
        return self.opts.epochs if self.opts.epochs is not None else n

    def config(self, **settings: Any) -> "SweepConfig":
        """A SweepConfig with this study's dataset, data folder and epoch override applied."""
        from jaxmlp.config import SweepConfig

        settings.setdefault("epochs", 10)
        settings["epochs"] = self.epochs(settings["epochs"])
        return SweepConfig(dataset=[self.opts.dataset], data_dir=self.opts.data_dir, **settings)

    # -- training --
    def sweep(self, name: str, config: "SweepConfig", keep_variables: bool = False) -> "Results":
        """Train `config` into ``<out>/<name>/`` (results, history, plots/); no checkpoints."""
        from jaxmlp.run import run_sweep

        t0 = time.perf_counter()
        res = run_sweep(config, self.out / name, progress=self.opts.progress, checkpoint_dir=None,
                        plots=True, name=f"{self.name}/{name}", keep_variables=keep_variables)
        self.sweeps.append(SweepRun(name, res, time.perf_counter() - t0))
        return res

    # -- summary pieces --
    def text(self, markdown: str) -> None:
        """A paragraph (or list) of the summary, in order."""
        self.blocks.append(markdown.strip())

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None,
              show: bool = False) -> None:
        """A markdown table in the summary; with `show`, also printed at the end of the run."""
        rows = [[_cell(v) for v in r] for r in rows]
        esc = lambda cells: " | ".join(c.replace("|", "\\|") for c in cells)  # |w| must not split a cell
        md = ["| " + esc(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        md += ["| " + esc(r) + " |" for r in rows]
        self.blocks.append((f"**{title}**\n\n" if title else "") + "\n".join(md))
        if show:
            self.printed.append(plain_table(headers, rows, title))

    def figure(self, fig: "Figure", filename: str, caption: str) -> Path:
        """Save `fig` as ``<out>/<filename>`` and link it from the summary."""
        path = self.out / filename
        if is_primary():
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120, bbox_inches="tight", facecolor="white")
        self.link(path, caption)
        return path

    def link(self, path: Path, caption: str) -> None:
        """Link an existing figure (e.g. one that plot_run wrote into a sweep's plots/)."""
        rel = Path(os.path.relpath(path, self.out)).as_posix()
        self.blocks.append(f"![{caption}]({rel})\n*{caption}*")


def _show(v: Any) -> str:
    """A setting as summary text: layer widths as 512,64; long number lists as their count and ends."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, int) for x in v) and isinstance(v, tuple):
        return ",".join(map(str, v))
    if isinstance(v, (list, tuple)) and len(v) > 4 and all(isinstance(x, (int, float)) for x in v):
        return f"{len(v)} values {_show(v[0])} … {_show(v[-1])}"
    if isinstance(v, (list, tuple)):
        return "[" + "; ".join(_show(x) for x in v) + "]"
    return str(v)


def _cell(v: Any) -> str:
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


# ---- running and writing -------------------------------------------------------------------------

def load_module(name: str) -> Any:
    """The module of study `name`; :class:`UsageError` for an unknown name."""
    if name not in STUDIES:
        raise UsageError(f"unknown study {name!r}; choose one of: {', '.join(STUDIES)} "
                         f"(or run 'python -m {PROG}' to list them)")
    return importlib.import_module(f"{__package__}.{name}")


def is_primary() -> bool:
    """Whether this process writes and prints (process 0 under jax.distributed; the only one otherwise).
    jax is imported here, not at the top: the studies set the host device count before it loads."""
    from jaxmlp import hosts

    return hosts.is_primary()


def run_study(name: str, opts: Options) -> Study:
    """Run one study end to end: its sweeps, figures and tables, then summary.md and summary.json."""
    from jaxmlp.run import check_out_dir

    module = load_module(name)
    study = Study(name, module.TITLE, opts)
    check_out_dir(study.out)   # a bad --out fails before any training
    t0 = time.perf_counter()
    module.run(study)
    wall = time.perf_counter() - t0
    if is_primary():   # under jax.distributed every process trains; process 0 alone writes and prints
        write_summary(study, wall)
        for table in study.printed:
            print(table + "\n")
        print(f"{name}: {'quick' if opts.quick else 'full'} run in {wall:.1f} s; summary in {study.out / 'summary.md'}")
    return study


def write_summary(study: Study, wall_s: float) -> None:
    """``summary.md`` (results, figures, settings, versions, device) and ``summary.json`` (the numbers)."""
    env = environment()
    mode = "quick (`--quick`: a smoke test, not the study's result)" if study.opts.quick else "full"
    first = study.sweeps[0].results if study.sweeps else None
    source = (first.config.get("data_source") or {}).get(study.opts.dataset, "?") if first else "?"
    lines = [f"# {study.title}", "", *sum(([b, ""] for b in study.blocks), [])]
    lines += ["## Settings", "",
              f"- mode: {mode}",
              f"- dataset: {study.opts.dataset} ({source}); the whole training set here is "
              f"{study.whole:.0%} of it (stratified), minus a validation share",
              *[f"- {k}: {_show(v)}" for k, v in study.settings.items()]]
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


def study_main(name: str, argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.<name> [flags]``."""
    use_one_device_per_core()
    try:
        args = build_parser(name).parse_args(argv)
        processes = processes_from_args(args)
        opts = options_from_args(args, Path(args.out) if args.out else None)
        join_processes(processes)
        run_study(name, opts)
        return 0
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
