"""Reading and writing one checkpoint with Orbax, sealed with checksums that every read verifies.

A checkpoint ``<folder>/<epoch>/`` holds two Orbax items:

- ``state``: for each group ``g``, ``group_<g>``: the member-state pytree of the group's (S, H) grid
  packed into one flat array per dtype (``{"float32": ..., "int32": ..., "bool": ...}``, leaves in
  ``jax.tree`` order);
- ``meta``: JSON ``{"format", "epoch", "config", "settings", "data", "history", "checksums", "checksum"}``:
  ``checksums`` has a CRC-32 of each packed array's bytes, ``data`` a SHA-256 of each dataset's training
  pool and test arrays, ``settings`` a SHA-256 of the settings that define the sweep, and ``checksum`` a
  SHA-256 of everything else in the meta. A read recomputes them all: damage that keeps a file's size
  (flipped bits) raises :class:`Damaged` instead of giving wrong numbers.

Why packed, and why plain zarr: Orbax's cost is mostly per array and per save, not per byte (a tiny
model's state is ~34 arrays of a few kB, 2.3 MB in all for 22 members). A checkpoint every epoch must stay
a small fraction of a tiny model's epoch (~0.4 s on 2 CPU cores). There, packing took a save from ~37 to
~20–27 ms of CPU (the state alone); a whole save (state, meta, deleting the oldest checkpoint) took ~46 ms
with Orbax's async machinery, OCDBT and zstd, and ~31–36 ms without them (OCDBT pays off for many large
arrays over many processes; float weights barely compress; every save is waited for anyway). CRC-32
(zlib) runs at GB/s, a small share of a save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sys
import zlib
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxmlp.errors import UsageError

FORMAT = 4   # 2: state packed per dtype; 3: Dense kernels stored (out, in); 4: checksums and fingerprints
# How tensorstore (which writes the arrays) reports an operating-system error inside its messages.
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


class Damaged(ValueError):
    """A checkpoint that does not read back as written (its message says where)."""


def manager(directory: Path, keep: int | None, read_only: bool = False) -> ocp.CheckpointManager:
    quiet_orbax()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=not read_only, read_only=read_only,
        # Leftovers of a save that was killed: never complete, so they can go.
        cleanup_tmp_directories=not read_only,
        # Every save is waited for (in line on CPU, on jaxmlp's own worker elsewhere), so Orbax's async
        # machinery (a commit thread and a finalize thread per save) would only add cost.
        enable_async_checkpointing=False)
    # Plain uncompressed zarr, not OCDBT: see the module docstring (a packed state is one to three
    # arrays, written by process 0 alone; float weights barely compress).
    handlers = {"state": ocp.PyTreeCheckpointHandler(use_ocdbt=False, use_compression=False),
                "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def save_args(grids: dict[str, dict[str, np.ndarray]], meta: dict[str, Any]) -> ocp.args.Composite:
    """What :func:`write` saves: the packed `grids` and `meta` sealed with their checksums."""
    meta = dict(meta, format=FORMAT, checksums={g: {k: _crc(a) for k, a in packed.items()}
                                                 for g, packed in grids.items()})
    meta["checksum"] = _digest(meta)
    return ocp.args.Composite(state=ocp.args.PyTreeSave(grids), meta=ocp.args.JsonSave(meta))


def write(mgr: ocp.CheckpointManager, epoch: int, args: ocp.args.Composite) -> None:
    """One complete save (in line on CPU, on the worker thread elsewhere): Orbax writes a temporary
    directory, then renames it."""
    mgr.save(epoch, args=args)
    mgr.wait_until_finished()


def read_meta(mgr: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """The meta item alone (JSON: cheap), verified; damage raises."""
    return _verified_meta(mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"], step)


def read(mgr: ocp.CheckpointManager, step: int, target: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The group grids (numpy trees shaped like the abstract `target`) and meta of one checkpoint, every
    array checked against its checksum; damage raises."""
    packed = {g: packed_target(tree) for g, tree in target.items()}
    state = ocp.args.PyTreeRestore(packed, restore_args=ocp.checkpoint_utils.construct_restore_args(packed))
    out = mgr.restore(step, args=ocp.args.Composite(state=state, meta=ocp.args.JsonRestore()))
    meta = _verified_meta(out["meta"], step)
    sums = meta["checksums"]
    if set(sums) != set(target) or any(set(sums[g]) != set(packed[g]) for g in target):
        raise Damaged("its checksums do not list the arrays of this sweep's state")
    for g in target:
        for name, array in out["state"][g].items():
            if _crc(np.asarray(array)) != sums[g][name]:
                raise Damaged(f"the {name} array of {g} does not match its checksum")
    return {g: unpack(out["state"][g], tree) for g, tree in target.items()}, meta


def _verified_meta(meta: Any, step: int) -> dict[str, Any]:
    if isinstance(meta, dict) and isinstance(meta.get("format"), int) and meta["format"] != FORMAT:
        raise Damaged(f"written by another jaxmlp version (checkpoint format {meta['format']}; "
                      f"this version reads format {FORMAT})")
    if not isinstance(meta, dict) or meta.get("checksum") != _digest({k: v for k, v in meta.items()
                                                                       if k != "checksum"}):
        raise Damaged("its meta does not match its checksum")
    if not (meta.get("epoch") == step and len(meta.get("history", ())) == step
            and isinstance(meta.get("config"), dict) and isinstance(meta.get("checksums"), dict)):
        raise Damaged(f"unexpected meta {str(meta)[:80]}")
    return meta


def settings_fingerprint(config: dict[str, Any]) -> str:
    return _digest(config)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, allow_nan=True).encode()).hexdigest()


def _crc(a: np.ndarray) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(a).data.cast('B') if a.size else b''):08x}"


def newest_sound(directory: Path, steps: list[int], read: Callable[[int], Any],
                  final: int | None = None) -> tuple[int, Any, dict[int, str]]:
    """(step, read(step), {newer step: why it failed}) for the newest step that reads and verifies.
    None sound: a UsageError (nothing is changed on disk)."""
    bad: dict[int, str] = {}
    for step in sorted(steps, reverse=True):
        try:
            return step, read(step), bad
        except Exception as e:   # damage shows as many error types (tensorstore, JSON, orbax, checksums)
            bad[step] = f"epoch {step}: {first_line(e)}"
    if final in bad:
        raise UsageError(f"the checkpoint of epoch {final} (the run's last) in {directory} failed verification "
                         f"({bad[final]}) and no earlier one is sound; nothing was evaluated")
    raise UsageError(f"no checkpoint in {directory} is sound ({'; '.join(bad.values())}); nothing was changed: "
                     "use --new-run to discard jaxmlp's checkpoints there and start over, or another "
                     "--checkpoint-dir")


# ---- packing -----------------------------------------------------------------------------------------

def pack(tree: Any) -> dict[str, np.ndarray]:
    """A numpy tree as one flat array per dtype, the leaves in ``jax.tree`` order (see the module
    docstring for why)."""
    by_dtype: dict[str, list[np.ndarray]] = {}
    for leaf in jax.tree.leaves(tree):
        by_dtype.setdefault(np.dtype(leaf.dtype).name, []).append(np.ravel(leaf))
    return {name: np.concatenate(parts) for name, parts in by_dtype.items()}


def packed_target(tree: Any) -> dict[str, jax.ShapeDtypeStruct]:
    """What :func:`pack` makes of a tree shaped like the abstract `tree`, as an abstract target."""
    sizes: dict[str, int] = {}
    for leaf in jax.tree.leaves(tree):
        name = np.dtype(leaf.dtype).name
        sizes[name] = sizes.get(name, 0) + math.prod(leaf.shape)
    return {name: jax.ShapeDtypeStruct((n,), np.dtype(name)) for name, n in sizes.items()}


def unpack(packed: dict[str, Any], tree: Any) -> Any:
    """The inverse of :func:`pack`: numpy arrays cut from `packed`, in the structure of `tree`."""
    offsets = dict.fromkeys(packed, 0)
    leaves = []
    for leaf in jax.tree.leaves(tree):
        name, n = np.dtype(leaf.dtype).name, math.prod(leaf.shape)
        flat = np.asarray(packed[name])
        if flat.shape != (flat.size,) or offsets[name] + n > flat.size:
            raise ValueError(f"packed {name} array of shape {flat.shape} does not match the sweep's state")
        leaves.append(flat[offsets[name]:offsets[name] + n].reshape(leaf.shape))
        offsets[name] += n
    return jax.tree.unflatten(jax.tree.structure(tree), leaves)


# ---- errors and Orbax's logs -------------------------------------------------------------------------

def storage_reason(e: BaseException) -> str | None:
    """The operating system's reason when a write failed because of the storage (full, read-only,
    too large, no permission), else None."""
    for x in _chain(e):
        if isinstance(x, OSError):
            return x.strerror or str(x)
        m = _OS_ERROR_CODE.search(str(x))
        if m:
            return os.strerror(int(m.group(1)))
    return None


def first_line(e: BaseException) -> str:
    """One short line for an exception: the message alone for :class:`Damaged`, else type and message."""
    text = str(e).strip().splitlines()
    if isinstance(e, Damaged):
        return text[0][:200]
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _chain(e: BaseException) -> list[BaseException]:
    out = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


class _NoOrbaxLogs(logging.Filter):
    """Drops Orbax's own log records: the errors they report reach the caller as exceptions, and its
    tracebacks from background threads would bury the one-line message of the command line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}orbax{os.sep}" not in record.pathname


def quiet_orbax() -> None:
    """Keep a refused write to one line: no Orbax log records, and none of the 'Event loop is closed'
    errors that tensorstore's late callbacks raise into the loop Orbax closed after the failure."""
    absl = logging.getLogger("absl")
    if not any(isinstance(f, _NoOrbaxLogs) for f in absl.filters):
        absl.addFilter(_NoOrbaxLogs())
    previous = sys.unraisablehook
    if getattr(previous, "_jaxmlp", False):
        return

    def hook(unraisable: Any) -> None:
        tb, names = unraisable.exc_traceback, set()
        while tb is not None:
            names.add(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        if not (unraisable.exc_type is RuntimeError and "call_soon_threadsafe" in names
                and "Event loop is closed" in str(unraisable.exc_value)):
            previous(unraisable)

    hook._jaxmlp = True
    sys.unraisablehook = hook
