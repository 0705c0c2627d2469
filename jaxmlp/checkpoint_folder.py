"""The checkpoint folder: what in it is jaxmlp's, its marker, its lock, and deleting only what jaxmlp wrote.

A folder jaxmlp writes checkpoints into carries its marker file ``.jaxmlp-checkpoints``. jaxmlp writes
only into a folder that is new, empty, marked, or holds nothing but jaxmlp's own epoch checkpoints (an
older jaxmlp's, made before the marker); anything else is refused by name and left as it is. In a marked
folder, files of others are left alone too; only a folder named like an epoch (``2023/``) that is not a
jaxmlp checkpoint is refused, since Orbax would take it for one (and delete it as an old checkpoint).

While a run uses the folder it holds ``.jaxmlp-lock``: an advisory ``flock`` that the operating system
releases when the process dies, in a file naming the process and host. A second run on the folder is
refused by name; a lock left by a dead process on this host is taken over with a note. Under
``jax.distributed`` process 0 alone writes the marker and holds the lock.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from jaxmlp import hosts
from jaxmlp.errors import UsageError

MARKER = ".jaxmlp-checkpoints"
LOCK = ".jaxmlp-lock"
# What Orbax puts in one epoch's checkpoint (jaxmlp's items are "state" and "meta").
_STEP_ENTRIES = {"_CHECKPOINT_METADATA", "commit_success.txt", "state", "meta"}
_EPOCH = re.compile(r"\d+")
_LEFTOVER = re.compile(r"\d+\.(orbax-checkpoint-tmp.*|unreadable\d*)")   # a killed save; a damaged one set aside


def default_dir(run_dir: str | os.PathLike) -> Path:
    """Where a sweep with run directory `run_dir` keeps its checkpoints unless told otherwise (the same
    from Python and the command line): ``<run_dir>/checkpoints``."""
    return Path(run_dir) / "checkpoints"


def is_epoch_checkpoint(path: Path) -> bool:
    """Whether `path` is (or was, before damage) an epoch checkpoint as jaxmlp writes them."""
    if not (_EPOCH.fullmatch(path.name) or _LEFTOVER.fullmatch(path.name)) or not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    # Orbax's own bookkeeping files start with "_" (_CHECKPOINT_METADATA, and more in other versions).
    ours = all(name in _STEP_ENTRIES or name.startswith("_") for name in names)
    return ours and bool(names or _LEFTOVER.fullmatch(path.name))


def epoch_checkpoints(directory: Path) -> list[int]:
    """The epochs of the complete checkpoints in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if _EPOCH.fullmatch(p.name) and is_epoch_checkpoint(p))


def foreign(directory: Path) -> list[str]:
    """The names in `directory` that jaxmlp did not write."""
    ours = {MARKER, LOCK}
    return sorted(p.name for p in directory.iterdir()
                  if p.name not in ours and not p.name.startswith(f"{LOCK}.") and not is_epoch_checkpoint(p))


def check_contents(directory: Path) -> None:
    """Refuse a folder jaxmlp must not write into (see the module docstring); nothing is changed."""
    if not directory.is_dir():
        return
    others = foreign(directory)
    if not (directory / MARKER).is_file():
        if others:
            raise UsageError(f"checkpoint folder {directory} holds files jaxmlp did not write ({_names(others)}) "
                             "and no jaxmlp marker; choose another --checkpoint-dir (jaxmlp leaves that folder "
                             "as it is)")
        return
    epochs = [name for name in others if _EPOCH.fullmatch(name)]
    if epochs:
        raise UsageError(f"{directory / epochs[0]} is not a jaxmlp checkpoint, but jaxmlp would take it for one "
                         f"in its checkpoint folder {directory}; move {_names(epochs)} out of it, or choose "
                         "another --checkpoint-dir")


def claim(directory: Path) -> None:
    """Make `directory` (if needed) and mark it as jaxmlp's, after :func:`check_contents` (process 0 only)."""
    check_contents(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / MARKER
    if not marker.is_file():
        marker.write_text("jaxmlp checkpoint folder: jaxmlp writes and deletes only its epoch checkpoints here\n")


def discard(directory: Path) -> list[int]:
    """Delete jaxmlp's epoch checkpoints in `directory` (and leftovers of killed saves); nothing else."""
    epochs = epoch_checkpoints(directory)
    for p in directory.iterdir():
        if is_epoch_checkpoint(p) and (_EPOCH.fullmatch(p.name) or "orbax-checkpoint-tmp" in p.name):
            shutil.rmtree(p)
    return epochs


def ensure_writable(directory: Path) -> None:
    """Create `directory` and write a probe file in it (root ignores permission bits, so just try)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise UsageError(f"checkpoint directory {directory} is not writable ({e.strerror or e}); "
                         "choose another --checkpoint-dir or use --no-checkpoint") from None


def ensure_creatable(directory: Path) -> None:
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


# ---- the lock ----------------------------------------------------------------------------------------

class Lock:
    """The folder's lock while this process uses it: :meth:`acquire` once it exists, :meth:`release` at
    the end (a process that dies releases it too; its file is then taken over by the next run)."""

    def __init__(self, directory: Path):
        self.path = directory / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None or not hosts.is_primary():
            return
        earlier = _HELD.get(self.path)
        if earlier is not None:   # left by an earlier sweep of this process that ended in an error
            earlier.release()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UsageError(f"checkpoint folder {self.path.parent} is in use by {_holder(self.path)} "
                                 f"(lock file {self.path}); wait for that run to end, or give this one "
                                 "another --checkpoint-dir") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:   # else the holder released (deleted) it between our open and flock: try again
                break
            os.close(fd)
        previous = _read(fd)
        if previous and previous.get("host") != socket.gethostname():
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise UsageError(f"checkpoint folder {self.path.parent} is in use by {_holder(self.path)} "
                             f"(lock file {self.path}); if that run has ended, delete the lock file and rerun")
        if previous and previous.get("pid") != os.getpid():
            print(f"jaxmlp: taking over the lock of {_holder(self.path)}, which is no longer running, in "
                  f"{self.path.parent}", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        self._fd = fd
        _HELD[self.path] = self

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD.pop(self.path, None)
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


_HELD: dict[Path, Lock] = {}   # the locks this process holds, released at exit at the latest
atexit.register(lambda: [lock.release() for lock in list(_HELD.values())])


def _read(fd: int) -> dict | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except ValueError:   # cut short by a crash: nobody holds it (we have the flock)
        return None
    return data if isinstance(data, dict) else None


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"process {info['pid']} on {info['host']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "another run"


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
