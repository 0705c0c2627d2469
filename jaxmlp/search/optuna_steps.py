"""Study steps that a kill cannot split: worked out on a copy, written ahead to a file, then applied.

An Optuna step (ask a batch of trials; report an epoch and prune; tell a batch's results) writes several
records to the study's storage, and the sampler or pruner may write more on its own (successive halving
marks a trial's rung before the trial is told PRUNED; CMA-ES keeps its optimizer in a trial's attributes;
QMC counts its samples in the study's). A process killed between two of those writes leaves a study that
no rerun can complete as the uninterrupted run did: the rung is marked, so asking the pruner again says
"go on". So each step here

1. copies the journal's study into memory and works there, with a fresh sampler and pruner: what it
   decides depends on what the journal holds alone, never on objects that a restart loses;
2. writes what the step changed (every touched trial as it is afterwards, and the study's attributes),
   with the step's result, to a file, atomically (written whole or not at all);
3. brings the journal to that state. Applying is idempotent: whatever part of it is already there is
   left as it is, so a step killed while applying is applied again, whole, from its file.

A rerun of a step whose file exists applies the file and returns its recorded result; without the file
the journal was not touched by the step, which then runs anew. The journal is Optuna's own
:class:`~optuna.storages.JournalStorage` in one file, locked with ``flock`` (a killed process leaves no
stale lock behind, unlike the default symlink lock, which would hold a rerun for 30 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    import optuna

STUDY_NAME = "jaxmlp-search"


class FlockLock:
    """A journal lock held with ``flock``: the system drops it when its process dies. (Optuna calls only
    ``acquire`` and ``release``; its lock base class is not public.)"""

    def __init__(self, path: str):
        self._path = path + ".flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def journal(path: Path) -> "optuna.storages.JournalStorage":
    """The journal storage of file `path` (created if missing)."""
    return open_journal(path)[0]


def open_journal(path: Path) -> tuple["optuna.storages.JournalStorage", Any]:
    """The journal storage of file `path` (created if missing) and its file backend, whose appends
    :func:`held` gathers into one."""
    from optuna.storages import JournalStorage

    _drop_partial_line(Path(path))
    backend = _backend(Path(path))
    return JournalStorage(backend), backend


def _drop_partial_line(path: Path) -> None:
    """Cut a last line that a killed write left unfinished (no newline): the journal would refuse every
    record appended after it. What it held is written again by the step that wrote it (see the module)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _backend(path: Path) -> Any:
    from optuna.storages.journal import BaseJournalBackend, JournalFileBackend

    class HeldBackend(BaseJournalBackend):
        """A journal file whose appends can be held in memory and written at once, in one write and one
        fsync (Optuna syncs the file after each record: ~1 ms each, several hundred in a search). Reads
        see held records too. One writer only: this search."""

        def __init__(self) -> None:
            self.file = JournalFileBackend(str(path), lock_obj=FlockLock(str(path)))
            self.written = sum(1 for _ in self.file.read_logs(0))
            self.pending: list[dict[str, Any]] | None = None

        def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
            if log_number_from < self.written:
                yield from self.file.read_logs(log_number_from)
            yield from (self.pending or [])[max(0, log_number_from - self.written):]

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            if self.pending is None:
                self.file.append_logs(logs)
                self.written += len(logs)
            else:
                self.pending.extend(logs)

        def hold(self) -> None:
            self.pending = []

        def release(self) -> None:
            logs, self.pending = self.pending or [], None
            if logs:
                self.file.append_logs(logs)
                self.written += len(logs)

    return HeldBackend()


@contextlib.contextmanager
def held(backend: Any) -> Iterator[None]:
    """Gather the journal writes made inside into one append (a backend of :func:`open_journal`). On an
    error the part gathered is written too, so that the file holds what the storage object has read."""
    backend.hold()
    try:
        yield
    finally:
        backend.release()


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines (one per trial told) off while a step runs; the caller's setting restored."""
    import warnings

    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Fresh samplers every trial would repeat the same experimental-feature warning each time.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


# ---- trials as JSON -----------------------------------------------------------------------------------

def trial_json(t: "optuna.trial.FrozenTrial") -> dict[str, Any]:
    """What a step may change of a trial, JSON-ready (no dates: a replayed trial gets its own)."""
    from optuna.distributions import distribution_to_json

    return {"number": t.number, "state": t.state.name, "values": t.values, "params": dict(t.params),
            "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
            "user_attrs": dict(t.user_attrs), "system_attrs": dict(t.system_attrs),
            "intermediate_values": {str(k): v for k, v in sorted(t.intermediate_values.items())}}


def _frozen(d: dict[str, Any]) -> "optuna.trial.FrozenTrial":
    """A template trial for ``create_new_trial`` from :func:`trial_json`'s dict."""
    import datetime

    from optuna.distributions import json_to_distribution
    from optuna.trial import FrozenTrial, TrialState

    state = TrialState[d["state"]]
    now = datetime.datetime.now()
    return FrozenTrial(number=d["number"], state=state, value=None, values=d["values"], datetime_start=now,
                       datetime_complete=now if state.is_finished() else None, params=d["params"],
                       distributions={k: json_to_distribution(v) for k, v in d["distributions"].items()},
                       user_attrs=d["user_attrs"], system_attrs=d["system_attrs"],
                       intermediate_values={int(k): v for k, v in d["intermediate_values"].items()}, trial_id=-1)


def _same(a: Any, b: Any) -> bool:
    # JSON equality, NaN equal to NaN (a diverged member's intermediate value, a pruner's rung value).
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# ---- the step ------------------------------------------------------------------------------------------

class Journal:
    """The study of a search in its journal file: load or create it, and run :meth:`step` on it."""

    def __init__(self, path: Path, direction: str):
        import optuna

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.storage, self.backend = open_journal(self.path)
        with quiet_optuna():
            study = optuna.create_study(storage=self.storage, study_name=STUDY_NAME, direction=direction,
                                        load_if_exists=True)
        if study.direction.name.lower() != direction:
            raise ValueError(f"{path} holds a study that is to {study.direction.name.lower()} its value, not "
                             f"to {direction} it")
        self.direction = direction
        self.study_id = self.storage.get_study_id_from_name(STUDY_NAME)

    def trials(self) -> list["optuna.trial.FrozenTrial"]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False)

    def study(self, sampler: Any = None, pruner: Any = None) -> "optuna.Study":
        """An Optuna study over the journal (for reading, plotting, or carrying on by hand)."""
        import optuna

        return optuna.Study(study_name=STUDY_NAME, storage=self.storage, sampler=sampler, pruner=pruner)

    def step(self, record: Path, work: Callable[["optuna.Study", Any, int], Any], pruner: Any = None) -> Any:
        """Run `work(study, storage, study_id)` on an in-memory copy of the study (its sampler: whatever
        `work` sets; its pruner: `pruner`; the copy's storage and study id to read and write), record the changes and `work`'s JSON-ready result in file `record`, apply them
        to the journal, and return the result. With `record` already there: apply it, return its result."""
        if record.exists():
            done = json.loads(record.read_text())
        else:
            with quiet_optuna():
                done = self._work(work, pruner)
            tmp = record.with_name(record.name + ".tmp")
            tmp.write_text(json.dumps(done))
            os.replace(tmp, record)   # whole or not at all
        self.apply(done["changes"])
        return done["result"]

    def _work(self, work: Callable[["optuna.Study", Any, int], Any], pruner: Any) -> dict[str, Any]:
        import optuna
        from optuna.samplers import RandomSampler
        from optuna.storages import InMemoryStorage

        memory = InMemoryStorage()
        sid = memory.create_new_study(self.storage.get_study_directions(self.study_id), STUDY_NAME)
        before_attrs = dict(self.storage.get_study_system_attrs(self.study_id))
        for k, v in before_attrs.items():
            memory.set_study_system_attr(sid, k, v)
        for k, v in self.storage.get_study_user_attrs(self.study_id).items():
            memory.set_study_user_attr(sid, k, v)
        before = [trial_json(t) for t in self.trials()]
        for t in self.trials():
            memory.create_new_trial(sid, template_trial=t)
        # The same name as the journal's study: Hyperband places trials in brackets by it.
        copy = optuna.Study(study_name=STUDY_NAME, storage=memory, sampler=RandomSampler(seed=0), pruner=pruner)
        result = work(copy, memory, sid)
        after = [trial_json(t) for t in memory.get_all_trials(sid, deepcopy=False)]
        attrs = memory.get_study_system_attrs(sid)
        return {"result": result,
                "changes": {"trials": [t for t in after if t["number"] >= len(before) or not _same(t, before[t["number"]])],
                            "study_system_attrs": {k: v for k, v in attrs.items()
                                                   if k not in before_attrs or not _same(v, before_attrs[k])}}}

    def apply(self, changes: dict[str, Any]) -> None:
        """Bring the journal to `changes` (see :meth:`step`), writing only what it lacks, in one append."""
        with held(self.backend):
            self._apply(changes)

    def _apply(self, changes: dict[str, Any]) -> None:
        from optuna.distributions import json_to_distribution
        from optuna.trial import TrialState

        for k, v in changes["study_system_attrs"].items():
            current = self.storage.get_study_system_attrs(self.study_id)
            if k not in current or not _same(current[k], v):
                self.storage.set_study_system_attr(self.study_id, k, v)
        for t in changes["trials"]:
            trials = self.trials()
            n = t["number"]
            if n == len(trials):
                self.storage.create_new_trial(self.study_id, template_trial=_frozen(t))
                continue
            if n > len(trials):
                raise RuntimeError(f"{self.path}: trial {n} follows trial {len(trials) - 1}: the journal was "
                                   "changed outside this search")
            have = trials[n]
            if have.state.is_finished():
                continue   # applied before: a finished trial never changes
            tid = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, n)
            for name, value in t["params"].items():
                if name not in have.params:
                    dist = json_to_distribution(t["distributions"][name])
                    self.storage.set_trial_param(tid, name, dist.to_internal_repr(value), dist)
            for k, v in t["system_attrs"].items():
                if k not in have.system_attrs or not _same(have.system_attrs[k], v):
                    self.storage.set_trial_system_attr(tid, k, v)
            for k, v in t["user_attrs"].items():
                if k not in have.user_attrs or not _same(have.user_attrs[k], v):
                    self.storage.set_trial_user_attr(tid, k, v)
            for step, v in t["intermediate_values"].items():
                if int(step) not in have.intermediate_values:
                    self.storage.set_trial_intermediate_value(tid, int(step), v)
            if t["state"] != "RUNNING":
                self.storage.set_trial_state_values(tid, TrialState[t["state"]], t["values"])
