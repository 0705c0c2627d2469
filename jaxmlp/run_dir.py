"""Guarding a run directory: another sweep's results are never overwritten unasked, a replaced run leaves
nothing of the old one behind, and results trained at length are never lost to a write that fails.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from jaxmlp import results, trained
from jaxmlp.checkpoint_state import differences
from jaxmlp.errors import UsageError

# What jaxmlp writes in a run directory (besides its checkpoint folder): replaced whole on --replace.
FILES = ("results.json", "results.csv", "history.jsonl", "variables.npz")


def check(out: Path, config: dict[str, Any], replace: bool, plots: bool) -> bool:
    """Refuse, before any work, a run directory whose `plots` is a file, or that holds the results of a
    sweep other than `config`'s (unless `replace`). Returns whether it holds another sweep's (to clear)."""
    if plots:
        check_plots_dir(out)
    path = out / "results.json"
    if not path.exists():
        return False
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))["config"]
        # Only the settings: the run adds records of its own to results.json's config (data_source, ...).
        diffs = differences({k: saved.get(k) for k in config}, config)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        diffs = ["its results.json is not one jaxmlp can read"]
    if not diffs:
        return False
    if not replace:
        why = "; ".join(d.replace(" in the checkpoint,", " there,") for d in diffs[:3])
        raise UsageError(f"--out {out} holds the results of another sweep ({why}); choose another --out, or "
                         "add --replace to replace them (results, history, plots and checkpoints)")
    return True


def clear(out: Path) -> None:
    """Remove what jaxmlp wrote in run directory `out` (its results files and figures), nothing else."""
    for name in FILES:
        (out / name).unlink(missing_ok=True)
    plots = out / "plots"
    if plots.is_dir():
        for p in plots.glob("*.png"):
            p.unlink()
        if not any(plots.iterdir()):
            plots.rmdir()


def check_plots_dir(run_dir: Path) -> None:
    """Refuse a run directory where figures cannot go, naming the path in the way."""
    plots = Path(run_dir) / "plots"
    if plots.exists() and not plots.is_dir():
        raise UsageError(f"{plots} is a file, so the figures cannot be written there; move it away and run "
                         f"'jaxmlp plot {run_dir}'")


def _write(res: results.Results, out: Path, variables: list[Any] | None) -> None:
    if variables is not None:   # first: results.json records the variables file's checksum
        res.config["variables_sha256"] = trained.write_variables(out, variables)
    res.write(out)


def write(res: results.Results, out: Path, plots: bool, variables: list[Any] | None = None) -> None:
    """Write `res` (and every member's final `variables`, for :func:`jaxmlp.load`) into `out` and draw its
    figures. When `out` refuses them (it became unwritable, the disk filled), they go to a new temporary
    folder that the one-line error names."""
    try:
        _write(res, out, variables)
    except OSError as e:
        try:
            kept = Path(tempfile.mkdtemp(prefix="jaxmlp-results-"))
            _write(res, kept, variables)
        except OSError:
            raise UsageError(f"cannot write the results to {out} ({e.strerror or e}) nor to a temporary folder; "
                             "make --out writable and rerun the command (it resumes from the checkpoints, "
                             "if the run saved any)") from None
        raise UsageError(f"cannot write the results to {out} ({e.strerror or e}); they are saved in {kept}/: "
                         f"copy them from there") from None
    if plots:
        from jaxmlp import plots as plots_lib

        check_plots_dir(out)
        try:
            plots_lib.plot_run(out)
        except OSError as e:
            raise UsageError(f"the results are in {out}/, but the figures could not be written "
                             f"({e.strerror or e}); run 'jaxmlp plot {out}' once that is fixed") from None
