"""A sweep's members between two epochs, as schedules see them: their numbers, and stopping them.

A schedule (successive halving, an Optuna pruner, your own rule) is a :class:`jaxmlp.callbacks.Callback`
whose ``on_population(population)`` runs after each epoch, on every process alike. It reads the epoch's
metrics and stops members; stopped members cost no compute from then on (the sweep packs the survivors
into smaller batches: :func:`jaxmlp.members.repack`), and ``results.json`` records how each one ended.
"""

from __future__ import annotations

from typing import Any, Iterable

from jaxmlp import hosts
from jaxmlp import members as members_lib


class Population:
    """The members of a sweep after epoch :attr:`epoch`. Indices are global member indices (the order of
    ``results.members``)."""

    def __init__(self, prep: members_lib.Prepared, state: members_lib.SweepState):
        self._prep, self._state = prep, state
        self._hparams: list[dict[str, Any]] | None = None

    @property
    def epoch(self) -> int:
        """Epochs completed (1-based number of the epoch just trained)."""
        return self._state.epoch

    @property
    def epochs(self) -> int:
        """The sweep's epoch budget (``config.epochs``)."""
        return self._prep.config.epochs

    @property
    def size(self) -> int:
        return self._prep.size

    def started(self, i: int) -> int:
        """Epochs the sweep had completed when member i started (0 unless it waited: :meth:`start`)."""
        return self._state.started.get(i, 0)

    def trained(self, i: int) -> int:
        """Epochs member i has trained so far (those with a number in the history)."""
        return sum(record["val_loss"][i] is not None for record in self._state.history)

    def waiting(self) -> list[int]:
        """Members held back that have not started (see :meth:`hold`)."""
        return sorted(i for i, s in self._state.status.items() if s.get("status") == "waiting")

    def hold(self, indices: Iterable[int]) -> list[int]:
        """Keep members `indices` waiting, untrained, until :meth:`start` (only in ``on_start``, before the
        first epoch): with :meth:`start` a schedule keeps a fixed number of members training and fills
        places that stops free with new members (asynchronous successive halving)."""
        return members_lib.hold(self._prep, self._state, indices)

    def start(self, indices: Iterable[int]) -> list[int]:
        """Start waiting members `indices` from the next epoch (from their initial state; their epochs are
        then counted from here: :meth:`started`). The sweep packs them with those still training."""
        return members_lib.start(self._prep, self._state, indices)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every epoch's record so far (see :func:`jaxmlp.members.run_epoch`)."""
        return self._state.history

    @property
    def record(self) -> dict[str, Any]:
        """This epoch's record: per member ``train_loss``, ``val_accuracy``, ... (None: not trained this
        epoch) and ``active``."""
        return self._state.history[-1]

    def metric(self, name: str = "val_accuracy") -> list[float | None]:
        """This epoch's `name` for every member (None for members that did not train in it)."""
        return list(self.record[name])

    def active(self) -> list[int]:
        """Members training now (after this epoch's stops and starts so far)."""
        out = []
        for unit, st, _ in self._state.placed(self._prep):
            act = hosts.get(st.active)
            out += [i for a, b, i in unit.members() if act[a, b]]
        return sorted(out)

    def hparams(self, i: int) -> dict[str, Any]:
        """Member i's settings, as ``results.members[i]["hparams"]`` records them."""
        if self._hparams is None:
            self._hparams = [h for g in self._prep.groups for h in g.member_hparams(list(g.defaults()))]
        return self._hparams[i]

    def stop(self, indices: Iterable[int], status: str = "pruned", **info: Any) -> list[int]:
        """Stop members `indices` now (their numbers stay those of their last, or best, epoch), recorded in
        ``results.json`` as `status` with `info` (e.g. ``rung=2``). Returns those it stopped (members
        already stopped are left as they were)."""
        return members_lib.stop(self._prep, self._state, indices, status, **info)

    def expect(self, n: int) -> int:
        """Say that about `n` of the members training now will go on after the next decision (e.g. the
        survivors of a coming rung): the smaller programs they will need start compiling in the background
        while the population trains, instead of when the others stop. A hint: nothing changes but when the
        compile happens. Returns the number of programs it started compiling."""
        return members_lib.expect(self._prep, self._state, n)

    def exploit(self, pairs: Iterable[tuple[int, int]], hparams: dict[int, dict[str, float]] | None = None) -> None:
        """Population-based training's step: for each (dst, src) member dst takes member src's training
        state (weights, optimizer state), then members in `hparams` train on with those values from the
        next epoch (no recompiling: hyperparameters are array inputs). Record what you did with :meth:`log`."""
        members_lib.exploit(self._prep, self._state, list(pairs), hparams)

    def current_hparams(self, i: int) -> dict[str, Any]:
        """Member i's settings now: :meth:`hparams` with the values :meth:`exploit` set since."""
        return {**self.hparams(i), **self._state.overrides.get(i, {})}

    def log(self, event: dict[str, Any]) -> None:
        """Record `event` (JSON-ready) in ``results.json``'s ``events``, with this epoch; it is checkpointed,
        so a resumed sweep's events equal an uninterrupted one's."""
        self._state.events.append({"epoch": self.epoch, **event})

    def mark(self, indices: Iterable[int], status: str, **info: Any) -> None:
        """Record how members `indices` ended (``results.json`` status and `info`) without stopping them,
        e.g. ``"replaced"`` for a PBT member whose weights another's replaced. A later stop or mark wins."""
        for i in indices:
            self._state.status[int(i)] = {"status": status, "epoch": self.epoch, **info}
