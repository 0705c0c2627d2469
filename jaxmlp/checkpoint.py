"""Orbax checkpoints of a whole sweep: save every few epochs, verify, resume exactly, load one trained member.

A checkpoint is the directory ``<checkpoint folder>/<epoch>/``, written by an Orbax ``CheckpointManager``
to a temporary directory that is renamed when complete (so no checkpoint is ever overwritten in place,
and an interrupted save leaves only a temporary directory that is ignored). What it holds and how it is
sealed with checksums: :mod:`jaxmlp.checkpoint_io`; how a sweep's state maps onto it:
:mod:`jaxmlp.checkpoint_state`; the folder's marker, lock and what jaxmlp may delete there:
:mod:`jaxmlp.checkpoint_folder`; loading or evaluating one trained member from it:
:mod:`jaxmlp.checkpoint_member`. The folder defaults to ``<run dir>/checkpoints``.

Every read is verified. Resuming takes the newest sound checkpoint: newer ones that fail verification are
named in one warning line and renamed ``<epoch>.unreadable`` (kept for inspection; their epochs are
trained again); none sound, a changed setting or changed training data refuse the resume in one line,
changing nothing. :func:`load_member` and :func:`evaluate_member` refuse a run whose final checkpoint
fails verification, so no number is ever computed from a damaged state.

Several processes (``jax.distributed``, see :mod:`jaxmlp.hosts`): every process gathers each grid whole
(``hosts.get``), packs it and calls the manager's save and restore in the same order, as Orbax requires
(it synchronises them inside); the arrays, being host numpy arrays equal everywhere, and the JSON are
written by process 0 alone. So the directory must be one that every process sees (a shared filesystem
across machines), and a checkpoint written by N processes restores in any other layout, one process
included. Notes and warnings are printed by process 0 only.

Where the save runs: on CPU the training already uses every core, so Orbax's work on a background thread
slowed the epochs by more than it took (+12 % with a worker thread vs about half of that done in line,
22 tiny members); there the save runs in line. On an accelerator the host is idle while the device
trains, so one worker thread runs the save while training goes on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import jax
import orbax.checkpoint as ocp

from jaxmlp import checkpoint_io as io
from jaxmlp import hosts
from jaxmlp import members as members_lib
from jaxmlp.checkpoint_folder import Lock, default_dir  # noqa: F401  (a public name)
from jaxmlp.checkpoint_folder import claim, discard, ensure_creatable, ensure_writable
from jaxmlp.checkpoint_io import FORMAT, pack  # noqa: F401  (FORMAT: a public name)
from jaxmlp.checkpoint_member import evaluate_member, load_member  # noqa: F401  (the public names)
from jaxmlp.checkpoint_state import data_fingerprint, differences, grid, layout_meta, settings, sweep_state, target
from jaxmlp.config import SweepConfig
from jaxmlp.errors import UsageError


class DefaultDir:
    """``checkpoint_dir``'s default in :func:`jaxmlp.run.run_sweep`: ``<out>/checkpoints`` (none without out)."""

    def __repr__(self) -> str:
        return "<out>/checkpoints"


DEFAULT = DefaultDir()


def check_flags(checkpointing: bool, resume: bool, new_run: bool) -> None:
    """Refuse flags that contradict each other, before anything else."""
    if resume and new_run:
        raise UsageError("--resume and --new-run contradict each other (--resume continues from the "
                         "checkpoints, --new-run discards them); give one of them")
    if not checkpointing and (resume or new_run):
        flag = "--resume" if resume else "--new-run"
        raise UsageError(f"{flag} needs checkpoints but --no-checkpoint turns them off; drop one of the two")


class Checkpointer:
    """Saves a sweep's state every `every` epochs (and at its last epoch), keeping the newest `keep`; with
    `interval_s`, only when at least that many seconds have passed since the previous save (or the start).

    Use: :meth:`check` before anything else, :meth:`restore` once the sweep is prepared, :meth:`save` after
    each epoch, :meth:`wait` at the end, :meth:`close` always (it releases the folder's lock). On CPU a save
    holds training up for all of its time; on an accelerator only for the copy to the host, the rest runs
    on a worker thread.
    """

    def __init__(self, directory: str | os.PathLike, config: SweepConfig, every: int = 1, keep: int = 2,
                 interval_s: float = 0.0):
        self.directory = Path(directory).absolute()
        self.config = config
        self.every = every
        self.keep = keep
        self.interval_s = interval_s
        self._saved_at = time.monotonic()
        self._manager: ocp.CheckpointManager | None = None
        self._checked = False
        self._resume_note = ""
        self._lock = Lock(self.directory)
        # One worker, so saves reach Orbax in order and only one thread ever uses the manager meanwhile;
        # none on CPU, where it would compete with training for the cores (see the module docstring).
        self._worker = (None if jax.local_devices()[0].platform == "cpu"
                        else ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxmlp-checkpoint"))
        self._pending: tuple[int, Future] | None = None   # the save that may still be in flight

    # ---- before training ---------------------------------------------------------------------------
    def check(self, resume: bool, new_run: bool = False) -> None:
        """Refuse what cannot work before any data is loaded: an unwritable directory, a folder of others
        or in use by a live run, checkpoints of a different sweep (unless `new_run`, which discards
        jaxmlp's checkpoints there and nothing else).

        Checkpoints of the same sweep are resumed whether or not `resume` is set: rerunning a killed
        command continues where it stopped; `new_run` starts over. A refusal releases the folder's lock.
        """
        with self._releasing():
            self._check(resume, new_run)

    def _check(self, resume: bool, new_run: bool) -> None:
        self._checked = True
        if not self.directory.exists():
            # Nothing to resume; create nothing yet (bad input found later must leave no trace), but
            # refuse now a place where the directory could not be made.
            ensure_creatable(self.directory)
            if resume:
                _note(f"no checkpoint in {self.directory} yet; training starts at epoch 1")
            return
        if not self.directory.is_dir():
            raise UsageError(f"checkpoint directory {self.directory} is a file, not a folder; choose another "
                             "--checkpoint-dir or use --no-checkpoint")
        steps = self._open().all_steps()
        if not steps:
            if resume:
                _note(f"no checkpoint in {self.directory} yet; training starts at epoch 1")
            return
        if new_run:
            if hosts.is_primary():
                discard(self.directory)
            hosts.barrier("new-run")
            self._manager.reload()
            _note(f"--new-run: discarded {len(steps)} checkpoint(s) in {self.directory}")
            return
        _, meta, _ = io.newest_sound(self.directory, steps, lambda s: io.read_meta(self._manager, s))
        diffs = differences(meta["config"], self.config.to_dict())
        if diffs:
            raise UsageError(f"{self.directory} holds checkpoints of a different sweep ({'; '.join(diffs)}); "
                             "use --new-run to discard them, or another --checkpoint-dir")
        self._resume_note = "" if resume else " (this sweep's checkpoints; --new-run starts over)"

    def restore(self, prep: members_lib.Prepared) -> members_lib.SweepState | None:
        """The sweep state of the newest sound checkpoint, placed like ``initial_state(prep)``; None when
        there is none. Newer ones that fail verification are renamed ``<epoch>.unreadable`` with one
        warning, so the epochs they held are trained and saved again. A checkpoint of other training data
        is refused (nothing changed on disk), and releases the folder's lock."""
        with self._releasing():
            return self._restore(prep)

    def _restore(self, prep: members_lib.Prepared) -> members_lib.SweepState | None:
        manager = self._open()
        steps = manager.all_steps()
        if not steps:
            return None
        abstract = target(prep)
        step, (grids, meta), bad = io.newest_sound(self.directory, steps, lambda s: io.read(manager, s, abstract))
        changed = [name for name, h in data_fingerprint(prep).items() if meta.get("data", {}).get(name) != h]
        if changed:
            raise UsageError(f"the training data changed since the checkpoint of epoch {step} in {self.directory} "
                             f"({', '.join(changed)}: other arrays now); resuming would mix old and new data: "
                             "restore the data it was trained on, or use --new-run to start over on the new data")
        if bad:
            _warn(f"{_epochs(bad)} in {self.directory} failed verification ({'; '.join(bad.values())}); "
                  f"resuming from the sound one of epoch {step} (the others are kept as <epoch>.unreadable)")
        if hosts.is_primary():   # one process renames; the others wait for it before looking again
            for s in bad:
                _set_aside(self.directory / str(s))
        hosts.barrier("set-aside")
        manager.reload()
        _note(f"resuming after epoch {step} from {self.directory}{self._resume_note}")
        return sweep_state(prep, grids, meta)

    # ---- while training ----------------------------------------------------------------------------
    def save(self, prep: members_lib.Prepared, state: members_lib.SweepState) -> None:
        """Save `state` if its epoch is a multiple of `every` or the sweep's last (every member done), and
        `interval_s` have passed since the previous save.

        On CPU it returns once the checkpoint is complete on disk; on an accelerator once the arrays are
        copied to the host, and they are written in the background. A write that the storage refuses
        (full disk, read-only) raises :class:`UsageError`, here or at the next call.
        """
        last = state.epoch >= self.config.epochs or members_lib.all_stopped(prep, state)
        if (state.epoch % self.every and not last) or time.monotonic() - self._saved_at < self.interval_s:
            return
        self._saved_at = time.monotonic()
        manager = self._open()
        self.wait()   # the previous save first, so that a failure names its own epoch
        # Host copies now: the next epoch donates (reuses) the device buffers. The history list is
        # copied too, as training appends to it while a worker writes.
        grids = {f"group_{g}": pack(hosts.get(grid(prep, state, g))) for g in range(len(prep.groups))}
        config = self.config.to_dict()
        meta = {"epoch": int(state.epoch), "config": config, "settings": settings(config),
                "data": data_fingerprint(prep), "history": list(state.history), **layout_meta(prep, state)}
        args = io.save_args(grids, meta)
        epoch = int(state.epoch)
        if self._worker is None:
            try:
                io.write(manager, epoch, args)
            except Exception as e:
                self._raise_write_error(e, epoch)
        else:
            self._pending = (epoch, self._worker.submit(io.write, manager, epoch, args))

    def wait(self) -> None:
        """Block until the last save is complete on disk; a refused write raises :class:`UsageError`."""
        if self._pending is None:
            return
        (epoch, done), self._pending = self._pending, None
        try:
            done.result()
        except Exception as e:
            self._raise_write_error(e, epoch)

    def close(self) -> None:
        """Release the folder's lock (after :meth:`wait`); the checkpoints stay."""
        self._lock.release()

    @contextlib.contextmanager
    def _releasing(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.close()
            raise

    def _open(self) -> ocp.CheckpointManager:
        if not self._checked:
            raise RuntimeError("Checkpointer.check() must come first")
        if self._manager is None:   # the directory did not exist at check(): make it at first use
            if hosts.is_primary():
                claim(self.directory)   # refuses a folder of others, marks it as jaxmlp's
            ensure_writable(self.directory)
            # Before Orbax sees the folder (it deletes unfinished saves): a live run's are not ours.
            self._lock.acquire()
            self._manager = io.manager(self.directory, self.keep)
        return self._manager

    def _raise_write_error(self, e: Exception, epoch: int) -> None:
        """Re-raise a failed write: as a UsageError when the storage refused it, else unchanged (a bug)."""
        reason = io.storage_reason(e)
        if reason is None:
            raise e
        self._manager.reload()   # Orbax drops steps it meant to delete; the disk still holds them
        steps = self._manager.all_steps()
        kept = f"; the checkpoints of epochs {', '.join(map(str, steps))} are intact" if steps else ""
        raise UsageError(f"cannot write the checkpoint of epoch {epoch} to {self.directory} ({reason}){kept}: "
                         "free space or fix permissions there (or choose another --checkpoint-dir), then rerun "
                         "the command to resume") from e


def _set_aside(path: Path) -> None:
    """Rename a damaged checkpoint out of Orbax's sight (kept for inspection, never reused)."""
    renamed = path.with_name(f"{path.name}.unreadable")
    n = 1
    while renamed.exists():
        n += 1
        renamed = path.with_name(f"{path.name}.unreadable{n}")
    path.rename(renamed)


def _epochs(bad: dict[int, str]) -> str:
    return (f"the checkpoint of epoch {next(iter(bad))}" if len(bad) == 1
            else f"the checkpoints of epochs {', '.join(map(str, bad))}")


def _note(msg: str) -> None:
    if hosts.is_primary():
        print(f"jaxmlp: {msg}", file=sys.stderr)


def _warn(msg: str) -> None:
    if hosts.is_primary():
        print(f"jaxmlp: warning: {msg}", file=sys.stderr)
