"""A sweep's results: per-member records and per-epoch history, to and from the run directory.

Run directory contract (see DESIGN.md): ``results.json`` (config, members, timing, versions, devices),
``results.csv`` (one row per member, fields flattened), ``history.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from jaxmlp.errors import UsageError

PACKAGES = ("jaxmlp", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


@dataclass
class Results:
    """What a sweep produced. ``members[i]["hparams"]`` holds every setting of member i."""

    config: dict[str, Any]
    members: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)
    variables: list[Any] | None = None   # per-member final variables (numpy), only when asked for; not written
    command: str | None = None           # the command line (or Python call) that made the run
    provenance: dict[str, Any] = field(default_factory=dict)   # see provenance()
    events: list[dict[str, Any]] = field(default_factory=list)  # what schedules did (PBT's exploits, ...)

    def best(self, metric: str = "accuracy", split: str = "val") -> dict[str, Any]:
        """The member with the highest ``split`` ``metric`` (lowest, for a loss), chosen on validation by
        default (choosing on test numbers would leak the test set into the choice). Members without a
        finite number (diverged, or never validated) are never chosen."""
        sign = -1 if metric == "loss" else 1
        scored = [m for m in self.members if not m.get("diverged") and _finite((m.get(split) or {}).get(metric))]
        if not scored:
            raise UsageError(f"no member has a finite {split} {metric}: every member diverged or none trained")
        return max(scored, key=lambda m: sign * m[split][metric])

    def to_dataframe(self) -> Any:
        """One row per member (``pandas.DataFrame``): the columns of results.csv."""
        return _pandas().DataFrame([_flatten(m) for m in self.members])

    def history_frame(self) -> Any:
        """The per-epoch history in long format (``pandas.DataFrame``): one row per (epoch, member) that
        trained, with ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy`` and every setting."""
        settings = [_flatten({"hparams": m["hparams"]}) for m in self.members]
        rows = []
        for record in self.history:
            for i, setting in enumerate(settings):
                if record["val_loss"][i] is None:
                    continue
                rows.append({"epoch": record["epoch"], "member": i, **setting,
                             **{k: record[k][i] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")}})
        return _pandas().DataFrame(rows)

    def to_json(self) -> dict[str, Any]:
        out = {"config": self.config, "members": self.members, "timing": self.timing,
               "versions": self.versions, "devices": self.devices}
        if self.command:
            out["command"] = self.command
        if self.provenance:
            out["provenance"] = self.provenance
        if self.events:
            out["events"] = self.events
        return out

    def write(self, out: str | os.PathLike) -> Path:
        """Write results.json, results.csv and history.jsonl into `out` (atomically, file by file)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "results.json", json.dumps(_json_safe(self.to_json()), indent=1, allow_nan=False))
        _atomic_write(out / "results.csv", _csv(self.members))
        _atomic_write(out / "history.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))
        return out

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> "Results":
        """Read a run directory written by :meth:`write`."""
        run_dir = Path(run_dir)
        path = run_dir / "results.json"
        if not path.is_file():
            raise UsageError(f"{run_dir} holds no results.json; give a run directory written by jaxmlp")
        try:
            d = json.loads(path.read_bytes().decode("utf-8"))
        except (ValueError, OSError) as e:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UsageError(f"cannot read {path} ({e}); the run directory is damaged") from None
        if not (isinstance(d, dict) and isinstance(d.get("config"), dict) and isinstance(d.get("members"), list)):
            raise UsageError(f"{path} is not a jaxmlp results file (it has no config and members); "
                             "give a run directory written by jaxmlp")
        history_path = run_dir / "history.jsonl"
        try:
            history = [json.loads(line) for line in history_path.read_bytes().decode("utf-8").splitlines()
                       if line.strip()] if history_path.is_file() else []
        except (ValueError, OSError) as e:
            raise UsageError(f"cannot read {history_path} ({e}); results.json is intact: rerun the sweep's "
                             "command to write the history again (it resumes from its checkpoints)") from None
        return cls(d["config"], d["members"], history, d.get("timing", {}), d.get("versions", {}),
                   d.get("devices", []), command=d.get("command"),
                   provenance=d.get("provenance", {}), events=d.get("events", []))


def _json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float as None: JSON has no NaN or Infinity (Python would write them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise UsageError("data frames need pandas: pip install 'jaxmlp[frames]'") from None
    return pandas


def _python_call() -> str:
    """How this Python process was started: ``python -m module args`` or ``python script args``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["-m", spec.name] if spec is not None and spec.name != "__main__" else sys.argv[:1]
    return "python " + " ".join([*head, *sys.argv[1:]]).strip()


def provenance(command: str | None = None) -> dict[str, Any]:
    """Where a run comes from: its call, the Python, platform and XLA settings, jax's backend."""
    import jax

    return {"command": command or _python_call(), "python": platform.python_version(),
            "platform": platform.platform(), "machine": platform.machine(),
            "backend": jax.default_backend(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "cwd": os.getcwd()}


def versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, key + "." if k != "hparams" else ""))
        else:
            flat[key] = v
    return flat


def _csv(members: list[dict[str, Any]]) -> str:
    rows = [_flatten(m) for m in members]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def append_history(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one epoch's line to history.jsonl as it happens."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
