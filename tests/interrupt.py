"""An in-process kill for resume tests: a callback that raises right after a chosen epoch's checkpoint."""

from __future__ import annotations

from jaxmlp.callbacks import Callback


class Killed(Exception):
    """What :class:`KillAfter` raises (a stand-in for the process dying there)."""


class KillAfter(Callback):
    """Raise :class:`Killed` once the checkpoint of epoch `epoch` is written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_checkpoint_end(self, epoch: int) -> None:
        if epoch == self.epoch:
            raise Killed
