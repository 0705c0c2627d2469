"""Using a trained member: its variables or test numbers, from the run's final checkpoint, verified.

The checkpoint folder is the run's default (``<run dir>/checkpoints``) unless told otherwise. A final
checkpoint that fails verification, or data that changed since it was written, is refused in one line:
no number is ever computed from a state that does not read back as it was written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jaxmlp import checkpoint_io as io
from jaxmlp import hosts, results
from jaxmlp import members as members_lib
from jaxmlp.checkpoint_folder import default_dir, epoch_checkpoints
from jaxmlp.checkpoint_state import data_fingerprint, differences, sweep_state, target
from jaxmlp.config import SweepConfig
from jaxmlp.errors import UsageError


def load_member(run_dir: str | os.PathLike, member: int = 0,
                checkpoint_dir: str | os.PathLike | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Member `member`'s final variables (the best epoch's with early stopping) as numpy arrays, ready for
    :func:`jaxmlp.models.apply`, and its settings (``results.json``'s ``hparams``)."""
    res, prep, state = _final_state(run_dir, member, checkpoint_dir)
    return members_lib.member_variables(prep, state)[member], res.members[member]["hparams"]


def evaluate_member(run_dir: str | os.PathLike, member: int = 0,
                    checkpoint_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Test loss and accuracy of member `member`, recomputed from its checkpoint by the sweep's own test
    program (so they equal the run's numbers on the same devices)."""
    _, prep, state = _final_state(run_dir, member, checkpoint_dir)
    return members_lib.test_metrics(prep, state)[member]


def _final_state(run_dir, member, checkpoint_dir) -> tuple[results.Results, members_lib.Prepared,
                                                           members_lib.SweepState]:
    """The run's results, its prepared sweep and the verified state of its final checkpoint: refused
    when that checkpoint fails verification or the data changed since it was written."""
    res, config, directory = _run_info(run_dir, member, checkpoint_dir)
    prep = members_lib.prepare(config)
    grids, meta = _final_checkpoint(directory, res, config, target(prep))
    changed = [name for name, h in data_fingerprint(prep).items() if meta.get("data", {}).get(name) != h]
    if changed:
        raise UsageError(f"the data changed since the run's checkpoint in {directory} ({', '.join(changed)}: "
                         "other arrays now), so its numbers cannot be recomputed; nothing was evaluated")
    return res, prep, sweep_state(prep, grids, meta)


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
        raise UsageError(f"no checkpoint folder {directory} for {run_dir} (was it run with --no-checkpoint?); "
                         "pass --checkpoint-dir where the run saved its checkpoints")
    return res, config, directory


def _final_checkpoint(directory: Path, res: results.Results, config: SweepConfig,
                      abstract: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The verified arrays and meta of the checkpoint of the run's final epoch (refused if it is not
    there or fails verification)."""
    manager = io.manager(directory, None, read_only=True)
    steps = epoch_checkpoints(directory)
    if not steps:
        raise UsageError(f"{directory} holds no checkpoint; was the run made with --no-checkpoint?")
    final = max(m["epochs_run"] for m in res.members)
    step, (grids, meta), bad = io.newest_sound(directory, [s for s in steps if s <= final],
                                             lambda s: io.read(manager, s, abstract), final=final)
    diffs = differences(meta["config"], config.to_dict())
    if diffs:
        raise UsageError(f"{directory} does not hold the run's checkpoints ({'; '.join(diffs)}); "
                         "pass the --checkpoint-dir the run used")
    if step != final:
        if final in bad:
            raise UsageError(f"the checkpoint of epoch {final} (the run's last) in {directory} failed verification "
                             f"({bad[final]}); nothing was evaluated: rerun the sweep's command to train that "
                             f"epoch again from the sound checkpoint of epoch {step}")
        raise UsageError(f"{directory} does not hold the run's final checkpoint (its newest is of epoch {step}, "
                         f"not {final}); pass the --checkpoint-dir the run used")
    return grids, meta
