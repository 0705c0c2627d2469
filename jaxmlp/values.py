"""A run's numbers per member, and the values its settings take: what plots and comparisons both read.

Everything here works on a :class:`~jaxmlp.results.Results` read from a run directory (results.json and
history.jsonl); no jax, no matplotlib.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jaxmlp.errors import UsageError
from jaxmlp.results import Results

REPLICATES = ("seed", "fold")          # axes that repeat an experiment: summarised over, and pair members
METRICS = ("accuracy", "loss", "accuracy_gap", "loss_gap")
SPLITS = ("train", "val", "test")


def key(v: Any) -> Any:
    """A setting's value as a dict key (hidden widths are lists in results.json)."""
    return tuple(v) if isinstance(v, list) else v


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def sort_key(v: Any) -> tuple:
    """Numbers by value, then everything else (names, widths) by its text."""
    return (0, float(v), "") if is_number(v) else (1, 0.0, str(v))


def fmt(v: Any) -> str:
    """A setting's value as short text: 0.1, "on", 8,16."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return str(v)


def distinct(results: Results, param: str) -> list[Any]:
    """The distinct values `param` takes over the members, sorted."""
    return sorted({key(m["hparams"].get(param)) for m in results.members}, key=sort_key)


def swept_axes(results: Results) -> list[str]:
    """The settings that take more than one value across the members (the sweep's axes), in the order
    of the members' settings: group settings, then dropout, l1, l2, lr, seed, fold."""
    keys = list(dict.fromkeys(k for m in results.members for k in m["hparams"]))
    return [k for k in keys if len(distinct(results, k)) > 1]


def check_param(results: Results, param: str) -> None:
    """:class:`UsageError` unless `param` is a setting of the run's members."""
    if not results.members or param not in results.members[0]["hparams"]:
        known = ", ".join(results.members[0]["hparams"]) if results.members else "none"
        raise UsageError(f"{param!r} is not a setting of this run's members; settings: {known}")


def at(line: dict[str, Any] | None, name: str, index: int) -> float | None:
    """Member `index`'s `name` in a history line (None: no such line, or the member had stopped)."""
    vals = line.get(name) if line else None
    return vals[index] if vals is not None and index < len(vals) else None


def tested_lines(results: Results) -> list[dict[str, Any] | None]:
    """Per member, the history line of the epoch whose parameters were tested: the best epoch with early
    stopping, else the last one it trained (as :func:`jaxmlp.members.member_records` chooses)."""
    by_epoch = {line.get("epoch"): line for line in results.history}
    early = results.config.get("patience", 0) > 0
    return [by_epoch.get(m["best_epoch"] if early else m["epochs_run"]) for m in results.members]


def member_values(results: Results, metric: str = "accuracy", split: str = "test") -> np.ndarray:
    """One number per member (in ``results.members`` order; NaN where unknown or diverged).

    `metric` is ``accuracy`` (in %), ``loss``, ``accuracy_gap`` (train minus validation accuracy, in
    percentage points) or ``loss_gap`` (validation minus train loss); the gaps are taken at the epoch
    used for testing and ignore `split`. `split` is ``val`` and ``test`` (from results.json) or ``train``
    (from history.jsonl, at the epoch used for testing).
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose train, val or test")
    out = []
    for m, line in zip(results.members, tested_lines(results)):
        i = m["index"]
        if metric == "accuracy_gap":
            a, b = at(line, "train_accuracy", i), at(line, "val_accuracy", i)
        elif metric == "loss_gap":
            a, b = at(line, "val_loss", i), at(line, "train_loss", i)
        elif split == "train":
            a, b = at(line, f"train_{metric}", i), 0.0
        else:
            a, b = (m.get(split) or {}).get(metric), 0.0
        out.append(math.nan if a is None or b is None or m.get("diverged") else float(a) - float(b))
    values = np.array(out, dtype=float)
    return values * 100.0 if metric.startswith("accuracy") else values
