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
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence


from jaxmlp.processes import add_process_flags, join_processes, processes_from_args
from experiments import report
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
            self.reduced += [f"{k}: {report.show(quick[k])} instead of {report.show(full[k])}"
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
        rows = [[report.cell(v) for v in r] for r in rows]
        esc = lambda cells: " | ".join(c.replace("|", "\\|") for c in cells)  # |w| must not split a cell
        md = ["| " + esc(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        md += ["| " + esc(r) + " |" for r in rows]
        self.blocks.append((f"**{title}**\n\n" if title else "") + "\n".join(md))
        if show:
            self.printed.append(report.plain_table(headers, rows, title))

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
        report.write_summary(study, wall)
        for table in study.printed:
            print(table + "\n")
        print(f"{name}: {'quick' if opts.quick else 'full'} run in {wall:.1f} s; summary in {study.out / 'summary.md'}")
    return study


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
