"""Hooks into a sweep's loop: progress of your own, logging, tests that stop a run at a chosen moment.

Pass instances to ``jaxmlp.sweep(..., callbacks=[...])`` (or ``jaxmlp.cli.main(argv, callbacks=...)``).
Every method is optional; each is called on every process of a multi-process run.
"""

from __future__ import annotations

from typing import Any, Sequence


class Callback:
    """Subclass and override what you need; the defaults do nothing."""

    def on_start(self, population: Any) -> None:
        """Once, before the first epoch of a sweep that starts afresh (not on a resume: what it did then is
        in the checkpoint): e.g. hold members back (:meth:`jaxmlp.population.Population.hold`)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Before epoch `epoch` (1-based) trains."""

    def on_unit_start(self, epoch: int, unit: int) -> None:
        """Before chunk `unit` of the sweep trains epoch `epoch` (chunks train one after another)."""

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        """After epoch `epoch`, with its history record (every member's metrics), before any checkpoint."""

    def on_population(self, population: Any) -> None:
        """After ``on_epoch_end``, before any checkpoint: `population` (:class:`jaxmlp.population.Population`)
        reads the epoch's numbers and may stop members (a schedule: successive halving, a pruner). Its
        decisions must depend on the numbers alone, so that a resumed sweep takes them again alike."""

    def on_checkpoint_start(self, epoch: int) -> None:
        """Before the checkpoint of epoch `epoch` is saved."""

    def on_checkpoint_end(self, epoch: int) -> None:
        """After it is saved (on CPU: written; on an accelerator: handed to the writer thread)."""


def call(callbacks: Sequence[Callback], method: str, *args: Any) -> None:
    """Call `method` on every callback, in order."""
    for cb in callbacks:
        getattr(cb, method)(*args)
