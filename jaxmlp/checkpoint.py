"""Orbax checkpoints of a whole sweep: save every few epochs, resume exactly, load one trained member.

A checkpoint is the directory ``<checkpoint dir>/<epoch>/`` with two items, written by an Orbax
``CheckpointManager`` (to a temporary directory that is renamed when complete, so no checkpoint is ever
overwritten in place, and an interrupted save leaves only a temporary directory that is ignored):

- ``state``: for each group ``g``, ``group_<g>``: the member-state pytree of the group's whole
  (streams × hyperparameters) grid — variables, batch statistics, optimizer state with its
  ``inject_hyperparams`` arrays, best-epoch variables, early-stopping fields — with leading axes (S, H),
  packed into one flat array per dtype (``{"float32": ..., "int32": ..., "bool": ...}``, leaves in
  ``jax.tree`` order). Units, padding and devices are left out, so a checkpoint written with one device
  count or chunk size restores with another. No random state is stored: every key derives from a
  member's seed and the epoch.
- ``meta``: JSON ``{"format", "epoch", "config", "history"}``.

Several processes (``jax.distributed``, see :mod:`jaxmlp.hosts`): every process gathers each grid whole
(``hosts.get``), packs it and calls the manager's save and restore in the same order, as Orbax requires
(it synchronises them inside); the arrays, being host numpy arrays equal everywhere, and the JSON are
written by process 0 alone. So the directory must be one that every process sees (a shared filesystem
across machines), and a checkpoint written by N processes restores in any other layout, one process
included. Notes and warnings are printed by process 0 only.

Why packed, and why plain zarr: Orbax's cost is mostly per array and per save, not per byte (a tiny
model's state is ~34 arrays of a few kB, 2.3 MB in all for 22 members). A checkpoint every epoch must stay
a small fraction of a tiny model's epoch (~0.4 s on 2 CPU cores). There, packing took a save from ~37 to
~20–27 ms of CPU (the state alone); a whole save (state, meta, deleting the oldest checkpoint) took ~46 ms
with Orbax's async machinery, OCDBT and zstd, and ~31–36 ms without them (OCDBT pays off for many large
arrays over many processes; float weights barely compress; every save is waited for anyway).

Where the save runs: on CPU the training already uses every core, so Orbax's work on a background thread
slowed the epochs by more than it took (+12 % with a worker thread vs about half of that done in line,
22 tiny members); there the save runs in line. On an accelerator the host is idle while the device
trains, so one worker thread runs the save while training goes on.

Restoring reads the packed arrays against an abstract target (``jax.ShapeDtypeStruct``, sized from
``jax.eval_shape`` of the member init) and unpacks them into that tree, so the optimizer state comes back
with its optax classes. A damaged newest checkpoint is skipped with a warning and renamed
``<epoch>.unreadable``; the newest readable one is resumed.
"""

from __future__ import annotations

import json
import math
import logging
import os
import re
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxmlp import hosts, results, train
from jaxmlp import members as members_lib
from jaxmlp.config import Group, SweepConfig
from jaxmlp.errors import UsageError

FORMAT = 3   # 2: state packed into one array per dtype; 3: Dense kernels stored (out, in)
# Settings that change only how members are laid out on devices, never which members a sweep has or what
# they train on: checkpoints hold whole group grids, so these may differ between saving and resuming.
LAYOUT_ONLY = ("devices", "chunk_size", "member_block")
# How tensorstore (which writes the arrays) reports an operating-system error inside its messages.
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


def default_dir(run_dir: str | os.PathLike) -> Path:
    """Where ``jaxmlp train/sweep --out RUN_DIR`` puts checkpoints without ``--checkpoint-dir``."""
    return Path("checkpoints") / Path(run_dir).name


class Checkpointer:
    """Saves a sweep's state every `every` epochs (and at its last epoch), keeping the newest `keep`.

    Use: :meth:`check` before anything else, :meth:`restore` once the sweep is prepared, :meth:`save` after
    each epoch, :meth:`wait` at the end. On CPU a save holds training up for all of its time; on an
    accelerator only for the copy to the host, the rest runs on a worker thread.
    """

    def __init__(self, directory: str | os.PathLike, config: SweepConfig, every: int = 1, keep: int = 2):
        self.directory = Path(directory).absolute()
        self.config = config
        self.every = every
        self.keep = keep
        self._manager: ocp.CheckpointManager | None = None
        self._checked = False
        # One worker, so saves reach Orbax in order and only one thread ever uses the manager meanwhile;
        # none on CPU, where it would compete with training for the cores (see the module docstring).
        self._worker = (None if jax.local_devices()[0].platform == "cpu"
                        else ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxmlp-checkpoint"))
        self._pending: tuple[int, Future] | None = None   # the save that may still be in flight

    # ---- before training ---------------------------------------------------------------------------
    def check(self, resume: bool, new_run: bool = False) -> None:
        """Refuse what cannot work before any data is loaded: an unwritable directory, or checkpoints of
        a different sweep there (unless `new_run`, which discards them).

        Checkpoints of the same sweep are resumed whether or not `resume` is set: rerunning a killed
        command continues where it stopped; `new_run` starts over.
        """
        self._checked = True
        if not self.directory.exists():
            # Nothing to resume; create nothing yet (bad input found later must leave no trace), but
            # refuse now a place where the directory could not be made.
            _ensure_creatable(self.directory)
            if resume:
                _note(f"no checkpoint in {self.directory} yet; training starts at epoch 1")
            return
        _ensure_writable(self.directory)
        self._manager = _manager(self.directory, self.keep)
        steps = self._manager.all_steps()
        if not steps:
            if resume:
                _note(f"no checkpoint in {self.directory} yet; training starts at epoch 1")
            return
        if new_run:
            for step in steps:
                self._manager.delete(step)
            self._manager.reload()
            _note(f"--new-run: discarded {len(steps)} checkpoint(s) in {self.directory}")
            return
        _, meta = _newest_readable(self.directory, steps, lambda s: _read_meta(self._manager, s),
                                   warn=False)
        diffs = _differences(meta["config"], self.config.to_dict())
        if diffs:
            raise UsageError(f"{self.directory} holds checkpoints of a different sweep ({'; '.join(diffs)}); "
                             "use --new-run to discard them, or another --checkpoint-dir")
        if not resume:
            _note(f"{self.directory} holds checkpoints of this sweep: resuming (--new-run starts over)")

    def restore(self, prep: members_lib.Prepared) -> members_lib.SweepState | None:
        """The sweep state of the newest readable checkpoint, placed like ``initial_state(prep)``; None
        when there is none. Newer unreadable checkpoints are renamed ``<epoch>.unreadable`` with a
        warning, so the epochs they held are trained and saved again."""
        manager = self._open()
        steps = manager.all_steps()
        if not steps:
            return None
        target = _target(prep.groups, [p.setup for p in prep.programs])
        step, (grids, meta) = _newest_readable(self.directory, steps, lambda s: _read(manager, s, target))
        if hosts.is_primary():   # one process renames; the others wait for it before looking again
            for bad in [s for s in steps if s > step]:
                _set_aside(self.directory / str(bad))
        hosts.barrier("set-aside")
        manager.reload()
        _note(f"resuming after epoch {step} from {self.directory}")
        return _sweep_state(prep, grids, meta)

    # ---- while training ----------------------------------------------------------------------------
    def save(self, prep: members_lib.Prepared, state: members_lib.SweepState) -> None:
        """Save `state` if its epoch is a multiple of `every` or the sweep's last (every member done).

        On CPU it returns once the checkpoint is complete on disk; on an accelerator once the arrays are
        copied to the host, and they are written in the background. A write that the storage refuses
        (full disk, read-only) raises :class:`UsageError`, here or at the next call.
        """
        last = state.epoch >= self.config.epochs or members_lib.all_stopped(prep, state)
        if state.epoch % self.every and not last:
            return
        manager = self._open()
        self.wait()   # the previous save first, so that a failure names its own epoch
        # Host copies now: the next epoch donates (reuses) the device buffers. The history list is
        # copied too, as training appends to it while a worker writes.
        grids = {f"group_{g}": _pack(hosts.get(_grid(prep, state, g))) for g in range(len(prep.groups))}
        meta = {"format": FORMAT, "epoch": int(state.epoch), "config": _plain(self.config.to_dict()),
                "history": list(state.history)}
        args = ocp.args.Composite(state=ocp.args.PyTreeSave(grids), meta=ocp.args.JsonSave(meta))
        epoch = int(state.epoch)
        if self._worker is None:
            try:
                _write(manager, epoch, args)
            except Exception as e:
                self._raise_write_error(e, epoch)
        else:
            self._pending = (epoch, self._worker.submit(_write, manager, epoch, args))

    def wait(self) -> None:
        """Block until the last save is complete on disk; a refused write raises :class:`UsageError`."""
        if self._pending is None:
            return
        (epoch, done), self._pending = self._pending, None
        try:
            done.result()
        except Exception as e:
            self._raise_write_error(e, epoch)

    def _open(self) -> ocp.CheckpointManager:
        if not self._checked:
            raise RuntimeError("Checkpointer.check() must come first")
        if self._manager is None:   # the directory did not exist at check(): make it at first use
            _ensure_writable(self.directory)
            self._manager = _manager(self.directory, self.keep)
        return self._manager

    def _raise_write_error(self, e: Exception, epoch: int) -> None:
        """Re-raise a failed write: as a UsageError when the storage refused it, else unchanged (a bug)."""
        reason = _storage_reason(e)
        if reason is None:
            raise e
        self._manager.reload()   # Orbax drops steps it meant to delete; the disk still holds them
        steps = self._manager.all_steps()
        kept = f"; the checkpoints of epochs {', '.join(map(str, steps))} are intact" if steps else ""
        raise UsageError(f"cannot write the checkpoint of epoch {epoch} to {self.directory} ({reason}){kept}: "
                         "free space or fix permissions there (or choose another --checkpoint-dir), then rerun "
                         "the command to resume") from e


# ---- using a trained member --------------------------------------------------------------------------

def load_member(run_dir: str | os.PathLike, member: int = 0,
                checkpoint_dir: str | os.PathLike | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Member `member`'s final variables (the best epoch's with early stopping) as numpy arrays, ready for
    :func:`jaxmlp.models.apply`, and its settings (``results.json``'s ``hparams``)."""
    res, config, directory = _run_info(run_dir, member, checkpoint_dir)
    groups = config.groups()
    # Without the data, n_train is unknown; it only sets the schedule's length (a value in the
    # optimizer's update), never a shape of the state, so any positive count gives the same target.
    setups = [members_lib.setup_for(config, group, 1) for group in groups]
    grids, _ = _final_checkpoint(directory, res, config, _target(groups, setups))
    g = next(g for g, group in enumerate(groups) if member < group.first_index + group.size)
    s, h = divmod(member - groups[g].first_index, len(groups[g].hparams))
    state = jax.tree.map(lambda a: np.asarray(a[s, h]), grids[f"group_{g}"])
    return train.final_variables(setups[g], state), res.members[member]["hparams"]


def evaluate_member(run_dir: str | os.PathLike, member: int = 0,
                    checkpoint_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Test loss and accuracy of member `member`, recomputed from its checkpoint by the sweep's own test
    program (so they equal the run's numbers on the same devices)."""
    res, config, directory = _run_info(run_dir, member, checkpoint_dir)
    prep = members_lib.prepare(config)
    grids, meta = _final_checkpoint(directory, res, config, _target(prep.groups, [p.setup for p in prep.programs]))
    return members_lib.test_metrics(prep, _sweep_state(prep, grids, meta))[member]


def _run_info(run_dir, member, checkpoint_dir) -> tuple[results.Results, SweepConfig, Path]:
    res = results.Results.read(run_dir)
    if not 0 <= member < len(res.members):
        raise UsageError(f"--member {member} is not in {run_dir}: it has members 0..{len(res.members) - 1}")
    config = SweepConfig.from_dict(res.config)
    if config.devices is not None and (config.devices > len(hosts.devices())
                                       or config.devices % hosts.process_count()):
        config.devices = None   # a count this run cannot lay out (more devices, or other processes): all here
    directory = Path(checkpoint_dir if checkpoint_dir is not None else default_dir(run_dir)).absolute()
    if not directory.is_dir():
        raise UsageError(f"no checkpoint folder {directory} for {run_dir}; pass --checkpoint-dir where "
                         "the run saved its checkpoints")
    return res, config, directory


def _final_checkpoint(directory: Path, res: results.Results, config: SweepConfig,
                      target: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The arrays and meta of the checkpoint of the run's final epoch (refused if it is not there)."""
    manager = _manager(directory, None, read_only=True)
    steps = manager.all_steps()
    if not steps:
        raise UsageError(f"{directory} holds no checkpoint; was the run made with --no-checkpoint?")
    step, (grids, meta) = _newest_readable(directory, steps, lambda s: _read(manager, s, target))
    diffs = _differences(meta["config"], config.to_dict())
    final = max(m["epochs_run"] for m in res.members)
    if diffs or step != final:
        why = "; ".join(diffs) if diffs else f"its newest readable checkpoint is of epoch {step}, not {final}"
        raise UsageError(f"{directory} does not hold the run's final checkpoint ({why}); "
                         "pass the --checkpoint-dir the run used")
    return grids, meta


# ---- reading and writing -----------------------------------------------------------------------------

def _manager(directory: Path, keep: int | None, read_only: bool = False) -> ocp.CheckpointManager:
    _quiet_orbax()
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


def _write(manager: ocp.CheckpointManager, epoch: int, args: ocp.args.Composite) -> None:
    """One complete save (in line on CPU, on the worker thread elsewhere): Orbax writes a temporary
    directory, then renames it."""
    manager.save(epoch, args=args)
    manager.wait_until_finished()


def _read_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """The meta item alone (JSON: cheap); damage raises."""
    return _checked_meta(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"], step)


def _read(manager: ocp.CheckpointManager, step: int,
          target: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The group grids (numpy trees shaped like the abstract `target`) and meta of one checkpoint;
    damage raises."""
    packed = {g: _packed_target(tree) for g, tree in target.items()}
    state = ocp.args.PyTreeRestore(packed, restore_args=ocp.checkpoint_utils.construct_restore_args(packed))
    out = manager.restore(step, args=ocp.args.Composite(state=state, meta=ocp.args.JsonRestore()))
    grids = {g: _unpack(out["state"][g], tree) for g, tree in target.items()}
    return grids, _checked_meta(out["meta"], step)


def _pack(tree: Any) -> dict[str, np.ndarray]:
    """A numpy tree as one flat array per dtype, the leaves in ``jax.tree`` order (see the module
    docstring for why)."""
    by_dtype: dict[str, list[np.ndarray]] = {}
    for leaf in jax.tree.leaves(tree):
        by_dtype.setdefault(np.dtype(leaf.dtype).name, []).append(np.ravel(leaf))
    return {name: np.concatenate(parts) for name, parts in by_dtype.items()}


def _packed_target(tree: Any) -> dict[str, jax.ShapeDtypeStruct]:
    """What :func:`_pack` makes of a tree shaped like the abstract `tree`, as an abstract target."""
    sizes: dict[str, int] = {}
    for leaf in jax.tree.leaves(tree):
        name = np.dtype(leaf.dtype).name
        sizes[name] = sizes.get(name, 0) + math.prod(leaf.shape)
    return {name: jax.ShapeDtypeStruct((n,), np.dtype(name)) for name, n in sizes.items()}


def _unpack(packed: dict[str, Any], tree: Any) -> Any:
    """The inverse of :func:`_pack`: numpy arrays cut from `packed`, in the structure of `tree`."""
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


def _checked_meta(meta: Any, step: int) -> dict[str, Any]:
    if isinstance(meta, dict) and isinstance(meta.get("format"), int) and meta["format"] != FORMAT:
        raise ValueError(f"written by another jaxmlp version (checkpoint format {meta['format']}; "
                         f"this version reads format {FORMAT})")
    if not (isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("epoch") == step
            and len(meta.get("history", ())) == step and isinstance(meta.get("config"), dict)):
        raise ValueError(f"unexpected meta {str(meta)[:80]}")
    return meta


def _newest_readable(directory: Path, steps: list[int], read: Callable[[int], Any],
                     warn: bool = True) -> tuple[int, Any]:
    """(step, read(step)) for the newest step that reads; a warning for each newer one that does not.
    None readable: a UsageError (nothing is changed on disk)."""
    problems = []
    for step in sorted(steps, reverse=True):
        try:
            value = read(step)
        except Exception as e:   # damage shows as many error types (tensorstore, JSON, orbax)
            problems.append(f"epoch {step}: {_first_line(e)}")
            continue
        if warn:
            for p in problems:
                _warn(f"skipping the unreadable checkpoint of {p}; using the one of epoch {step} in {directory}")
        return step, value
    raise UsageError(f"no checkpoint in {directory} can be read ({'; '.join(problems)}); "
                     "use --new-run to discard them, or another --checkpoint-dir")


def _set_aside(path: Path) -> None:
    """Rename a damaged checkpoint out of Orbax's sight (kept for inspection, never reused)."""
    target = path.with_name(f"{path.name}.unreadable")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.unreadable{n}")
    path.rename(target)


def _sweep_state(prep: members_lib.Prepared, grids: dict[str, Any],
                 meta: dict[str, Any]) -> members_lib.SweepState:
    """The restored (host) grids cut into the sweep's units and placed on the member mesh."""
    units = []
    for unit in prep.units:
        pick = np.ix_(unit.streams, unit.hparams)   # padding repeats real members here too
        grid = jax.tree.map(lambda a: np.asarray(a)[pick], grids[f"group_{unit.group}"])
        units.append(hosts.put(grid, members_lib.member_sharding(prep.config, unit)))
    return members_lib.SweepState(int(meta["epoch"]), units, list(meta["history"]))


def _target(groups: list[Group], setups: list[train.Setup]) -> dict[str, Any]:
    """The abstract state: per group, the member-state tree of its (S, H) grid as
    ``jax.ShapeDtypeStruct`` (with optax's state classes)."""
    hp = {k: jnp.float32(0.0) for k in train.HPARAMS}
    key = train.member_key(jnp.uint32(0))
    out = {}
    for g, (group, setup) in enumerate(zip(groups, setups)):
        one = jax.eval_shape(partial(train.init, setup), hp, key)
        grid = (len(group.streams), len(group.hparams))
        out[f"group_{g}"] = jax.tree.map(lambda a: jax.ShapeDtypeStruct(grid + a.shape, a.dtype), one)
    return out


def _grid(prep: members_lib.Prepared, state: members_lib.SweepState, g: int) -> Any:
    """Group g's state as its (S, H) grid of real members: the unit's own arrays when one unit covers the
    grid, else gathered from the units on the host (padding left out)."""
    group = prep.groups[g]
    units = [(u, unit) for u, unit in enumerate(prep.units) if unit.group == g]
    shape = (len(group.streams), len(group.hparams))
    if len(units) == 1 and units[0][1].shape == shape:
        return state.units[units[0][0]]
    host = hosts.get([state.units[u] for u, _ in units])

    def assemble(*leaves):
        out = np.empty(shape + leaves[0].shape[2:], leaves[0].dtype)
        for (_, unit), leaf in zip(units, leaves):
            a, b = np.nonzero(unit.real)
            out[np.asarray(unit.streams)[a], np.asarray(unit.hparams)[b]] = leaf[a, b]
        return out

    return jax.tree.map(assemble, *host)


# ---- small helpers -----------------------------------------------------------------------------------

def _ensure_writable(directory: Path) -> None:
    """Create `directory` and write a probe file in it (root ignores permission bits, so just try)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise UsageError(f"checkpoint directory {directory} is not writable ({e.strerror or e}); "
                         "choose another --checkpoint-dir or use --no-checkpoint") from None


def _ensure_creatable(directory: Path) -> None:
    """Refuse a directory that could not be made: its nearest existing ancestor must be a writable folder."""
    parent = next(p for p in directory.parents if p.exists())
    if not parent.is_dir():
        raise UsageError(f"checkpoint directory {directory} cannot be made: {parent} is a file; "
                         "choose another --checkpoint-dir or use --no-checkpoint")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise UsageError(f"checkpoint directory {directory} cannot be made in {parent} ({e.strerror or e}); "
                         "choose another --checkpoint-dir or use --no-checkpoint") from None


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """`d` as JSON would return it (tuples -> lists), so saved and current configs compare equal."""
    return json.loads(json.dumps(d))


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'--flag A in the checkpoint, B now' for each setting that differs (layout-only ones ignored)."""
    saved, now = _plain(saved), _plain(now)
    out = []
    for k in sorted((set(saved) | set(now)) - set(LAYOUT_ONLY)):
        if saved.get(k) != now.get(k):
            out.append(f"--{k.replace('_', '-')} {_show(saved.get(k))} in the checkpoint, {_show(now.get(k))} now")
    return out


def _show(v: Any) -> str:
    if isinstance(v, list):
        return "/".join(_show(x) for x in v) if any(isinstance(x, list) for x in v) else ",".join(map(str, v))
    return str(v)


def _storage_reason(e: BaseException) -> str | None:
    """The operating system's reason when a write failed because of the storage (full, read-only,
    too large, no permission), else None."""
    for x in _chain(e):
        if isinstance(x, OSError):
            return x.strerror or str(x)
        m = _OS_ERROR_CODE.search(str(x))
        if m:
            return os.strerror(int(m.group(1)))
    return None


class _NoOrbaxLogs(logging.Filter):
    """Drops Orbax's own log records: the errors they report reach the caller as exceptions, and its
    tracebacks from background threads would bury the one-line message of the command line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}orbax{os.sep}" not in record.pathname


def _quiet_orbax() -> None:
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


def _chain(e: BaseException) -> list[BaseException]:
    out = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _note(msg: str) -> None:
    if hosts.is_primary():
        print(f"jaxmlp: {msg}", file=sys.stderr)


def _warn(msg: str) -> None:
    if hosts.is_primary():
        print(f"jaxmlp: warning: {msg}", file=sys.stderr)
