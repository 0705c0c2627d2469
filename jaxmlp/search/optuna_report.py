"""What a search leaves in its run directory: ``search.json`` (every trial, totals, the best) and Optuna's
own figures in ``plots/`` (optimisation history, intermediate values, parameter importances, parallel
coordinates, contour)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna


def trial_rows(trials: list["optuna.trial.FrozenTrial"], members: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trial: number, batch, member, params, state, value, intermediate values (by epoch),
    the epoch it was pruned at, and how its member ended (`members`: results records by trial number)."""
    rows = []
    for t in trials:
        m = members.get(t.number, {})
        rows.append({
            "number": t.number, "batch": t.user_attrs.get("jaxmlp_batch"), "member": t.user_attrs.get("jaxmlp_member"),
            "params": dict(t.params), "state": t.state.name, "value": t.value,
            "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
            "pruned_step": t.last_step if t.state.name == "PRUNED" and m.get("status") == "pruned" else None,
            "status": t.user_attrs.get("jaxmlp_status", m.get("status")), "epochs_run": m.get("epochs_run"),
            "best_epoch": m.get("best_epoch"), "test": m.get("test"),
        })
    return rows


def best_row(rows: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    """The complete trial with the best value (the first of equals), as Optuna's ``best_trial`` chooses."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None and math.isfinite(r["value"])]
    if not done:
        return None
    sign = 1 if direction == "maximize" else -1
    return max(done, key=lambda r: (sign * r["value"], -r["number"]))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` whole or not at all (a kill leaves the previous file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


PLOTS = ("optimization_history", "intermediate_values", "param_importances", "parallel_coordinate", "contour")


def write_plots(study: "optuna.Study", folder: Path) -> tuple[list[Path], list[str]]:
    """Optuna's matplotlib figures of `study` as PNGs in `folder`. A figure Optuna cannot draw (importances
    from too few complete trials, a contour of one parameter) is skipped with a one-line note. Returns the
    paths written and the notes."""
    import matplotlib.pyplot as plt   # Optuna draws through pyplot; each figure is saved and closed at once
    from optuna.visualization import matplotlib as vis

    folder.mkdir(parents=True, exist_ok=True)
    paths, notes = [], []
    for name in PLOTS:
        kwargs: dict[str, Any] = {}
        if name == "param_importances":
            kwargs["evaluator"] = _importance_evaluator()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # Optuna marks its matplotlib figures experimental
                ax = getattr(vis, f"plot_{name}")(study, **kwargs)
        except Exception as e:  # noqa: BLE001 - any figure Optuna cannot draw is skipped, with why
            notes.append(f"{name}: not drawn ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
            continue
        first = ax.flat[0] if hasattr(ax, "flat") else ax
        fig = first.figure
        fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 4.5))
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths, notes


def _importance_evaluator() -> Any:
    """fANOVA (Optuna's default) where scikit-learn is installed, else PED-ANOVA (needs numpy alone)."""
    import importlib.util

    from optuna import importance

    if importlib.util.find_spec("sklearn") is not None:
        return importance.FanovaImportanceEvaluator(seed=0)
    return importance.PedAnovaImportanceEvaluator()
