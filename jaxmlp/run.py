"""A sweep end to end: prepare, resume or initialise, train with progress and checkpoints, write results.

This is what ``jaxmlp sweep`` / ``jaxmlp train`` and :func:`jaxmlp.sweep` call. Under ``jax.distributed``
every process calls it alike (every process trains and takes part in each checkpoint's save and restore);
only process 0 writes the run directory and shows progress.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from jaxmlp import checkpoint, hostdevices, hosts, results, run_dir
from jaxmlp.callbacks import Callback, call
from jaxmlp import members as members_lib
from jaxmlp.config import SweepConfig
from jaxmlp.population import Population
from jaxmlp.errors import UsageError


def check_out_dir(out: str | os.PathLike | None) -> Path | None:
    """Refuse an output path that is a file or cannot be created, before anything is written."""
    if out is None:
        return None
    out = Path(out)
    for p in [out, *out.parents]:
        if p.exists():
            if not p.is_dir():
                raise UsageError(f"output path {p} is a file, not a directory; choose another --out")
            if not os.access(p, os.W_OK):
                raise UsageError(f"output directory {p} is not writable; choose another --out")
            break
    return out


def _postfix(record: dict[str, Any]) -> dict[str, str]:
    val = [v for v in record["val_accuracy"] if v is not None]
    if len(record["val_accuracy"]) == 1 and val and record["train_loss"][0] is not None:
        return {"loss": f"{record['train_loss'][0]:.4f}", "acc": f"{record['train_accuracy'][0]:.4f}",
                "val_loss": f"{record['val_loss'][0]:.4f}", "val_acc": f"{val[0]:.4f}"}
    return {"best_val_acc": f"{max(val):.4f}" if val else "-",
            "training": f"{sum(record['active'])}/{len(record['active'])}"}


def run_sweep(config: SweepConfig, out: str | os.PathLike | None = None, *, progress: bool = True,
              checkpoint_dir: str | os.PathLike | None = checkpoint.DEFAULT, resume: bool = False,
              new_run: bool = False, checkpoint_every: int = 1, keep: int = 2, plots: bool = True,
              name: str | None = None, keep_variables: bool = False,
              command: str | None = None, replace: bool = False, callbacks: Sequence[Callback] = (),
              repack: bool | str = "auto", checkpoint_interval_s: float = 0.0) -> results.Results:
    """Train every member of `config`; write the run directory `out` (if given) and return the results.

    The sweep state is saved to `checkpoint_dir` (by default ``<out>/checkpoints``; None: no checkpoints)
    every `checkpoint_every` epochs and at the last (keeping `keep`), but no sooner than
    `checkpoint_interval_s` seconds after the previous save (a killed sweep retrains up to that long; 0:
    every time); checkpoints of this same sweep there
    are resumed from the newest sound one, with or without `resume`, unless `new_run` discards them. An
    `out` holding another sweep's results is refused unless `replace`, which replaces that run whole. With
    `keep_variables`, ``Results.variables[i]`` holds member i's final variables as numpy trees (they are
    always written to ``out/variables.npz`` for :func:`jaxmlp.load`). `callbacks`: hooks into the loop
    (:class:`jaxmlp.callbacks.Callback`; a schedule that stops members is one). `repack`: members still
    training are packed into smaller batches once stops (patience, a schedule, divergence) at least halve a
    group's work, so the epochs get cheaper: ``"auto"`` when the training saved outweighs compiling the
    smaller batch, True whenever, False never (:func:`jaxmlp.members.repack`).

    Several processes (:func:`jaxmlp.hosts.start` first): each returns the same results; only process 0
    writes `out` and shows `progress`, the others write nothing there.
    """
    if checkpoint_dir is checkpoint.DEFAULT:
        checkpoint_dir = None if out is None else checkpoint.default_dir(out)
    checkpoint.check_flags(checkpoint_dir is not None, resume, new_run)
    primary = hosts.is_primary()
    # Every process gathers the final variables when the run writes them (a collective: all must join),
    # though process 0 alone writes: decided here, before `out` is dropped in the other processes.
    gather_variables = out is not None or keep_variables
    out = check_out_dir(out) if primary else None
    progress = progress and primary
    config.validate()
    replacing = out is not None and run_dir.check(out, config.to_dict(), replace, plots)
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = checkpoint.Checkpointer(checkpoint_dir, config, every=checkpoint_every, keep=keep,
                                       interval_s=checkpoint_interval_s)
        # Replacing a run replaces its checkpoints too (jaxmlp's own, in its default folder).
        ckpt.check(resume, new_run or (replacing and ckpt.directory == checkpoint.default_dir(out).absolute()))
    prep = members_lib.prepare(config)
    prep.repack = repack
    if progress:
        print(f"jaxmlp: {prep.describe()}", file=sys.stderr)
        note = hostdevices.single_device_note()
        if note:
            print(f"jaxmlp: note: {note}", file=sys.stderr)
    state = ckpt.restore(prep) if ckpt is not None else None
    # Compile while the members initialise, unless a repacked sweep resumes (programs of other shapes) or
    # a finished one is run again (nothing to train).
    if state is None or (state.layout is None and state.epoch < config.epochs
                         and not members_lib.all_stopped(prep, state)):
        members_lib.compile_ahead(prep)
    if state is None:
        state = members_lib.initial_state(prep)
        call(callbacks, "on_start", Population(prep, state))
        if repack:   # members held back leave the batch before the first epoch
            members_lib.repack(prep, state, when=repack)
    history_path = None
    if out is not None:
        if replacing:
            run_dir.clear(out)
        out.mkdir(parents=True, exist_ok=True)
        history_path = out / "history.jsonl"
        history_path.write_text("")
        for record in state.history:
            results.append_history(history_path, record)

    bar = tqdm(total=config.epochs, initial=state.epoch, desc=name or "sweep", unit="epoch",
               disable=not progress, dynamic_ncols=True)
    train_s, checkpoint_s, repack_s, samples, epochs = 0.0, 0.0, 0.0, 0, 0
    earlier = dict(state.spent)   # what the sessions before this one spent (resumed from a checkpoint)

    def spent() -> dict[str, float]:
        """Totals over every session that trained this sweep, this one included."""
        now = {"train_s": train_s, "compile_s": prep.compile_s(), "checkpoint_s": checkpoint_s,
               "repack_s": repack_s, "samples": samples, "sessions": 1 if epochs else 0}
        return {k: earlier.get(k, 0) + v for k, v in now.items()}
    # Samples one epoch trains, per member (members of a group share the dataset and split).
    member_samples = [prep.group_data(g).n_train for g, group in enumerate(prep.groups) for _ in range(group.size)]
    try:
        while state.epoch < config.epochs and not members_lib.all_stopped(prep, state):
            compile_before = prep.compile_s()
            call(callbacks, "on_epoch_start", state.epoch + 1)
            t0 = time.perf_counter()
            record = members_lib.run_epoch(prep, state, lambda e, u: call(callbacks, "on_unit_start", e, u))
            train_s += time.perf_counter() - t0 - (prep.compile_s() - compile_before)
            epochs += 1
            samples += sum(n for n, v in zip(member_samples, record["val_loss"]) if v is not None)
            if history_path is not None:
                results.append_history(history_path, record)
            call(callbacks, "on_epoch_end", state.epoch, record)
            call(callbacks, "on_population", Population(prep, state))
            if repack:
                t0 = time.perf_counter()
                members_lib.repack(prep, state, when=repack)
                repack_s += time.perf_counter() - t0
            state.spent = spent()
            if ckpt is not None:
                call(callbacks, "on_checkpoint_start", state.epoch)
                t0 = time.perf_counter()
                ckpt.save(prep, state)
                checkpoint_s += time.perf_counter() - t0
                call(callbacks, "on_checkpoint_end", state.epoch)
            bar.update(1)
            bar.set_postfix(_postfix(record))
    finally:
        bar.close()
        if ckpt is not None:
            t0 = time.perf_counter()
            try:
                ckpt.wait()
            finally:
                ckpt.close()
            checkpoint_s += time.perf_counter() - t0

    total = spent()
    # Members back in the planned layout once (the records and the variables read it; each would else move them).
    state = members_lib.canonical(prep, state)
    res = results.Results(
        config=config.to_dict(),
        members=members_lib.member_records(prep, state),
        history=state.history,
        events=state.events,
        # train_s: the epochs alone; checkpoint_s: what saving blocked (on CPU the saves themselves; on an
        # accelerator the copies to the host and waiting for the last write), so train_s + checkpoint_s
        # is the loop's wall time. Totals over the sessions that trained the sweep (a resumed one adds its
        # time to what its checkpoint says the earlier ones spent; running a finished one again adds none).
        timing={"compile_s": round(total["compile_s"], 3), "train_s": round(total["train_s"], 3),
                "checkpoint_s": round(total["checkpoint_s"], 3), "repack_s": round(total["repack_s"], 3),
                "sessions": int(total["sessions"]),
                # This session's: distinct epoch programs run (some may have been compiled before), epochs.
                "compiled_epochs": len(prep.used), "epochs_this_session": epochs,
                # What stopping members saved: member-epochs trained against every member training every epoch.
                "member_epochs": members_lib.member_epochs(state), "member_epochs_full": prep.size * config.epochs,
                "samples_per_s": (round(total["samples"] / total["train_s"], 1) if total["train_s"] > 0
                                  else math.nan)},
        versions=results.versions(),
        devices=[str(d) for d in prep.layout.devices],
    )
    res.config["data_source"] = {k: v.source for k, v in prep.data.items()}
    res.config["data"] = {k: {"source": v.source, "sha256": v.fingerprint, "input_shape": list(v.dataset.input_shape),
                              "num_classes": v.dataset.num_classes, "n_train": v.n_train,
                              "n_val": int(v.val_idx.shape[1])} for k, v in prep.data.items()}
    res.provenance = results.provenance(command)
    res.command = res.provenance["command"]
    # Gathered to the host only when they are written (variables.npz) or asked for.
    variables = members_lib.member_variables(prep, state) if gather_variables else None
    if keep_variables:
        res.variables = variables
    if out is not None:
        run_dir.write(res, out, plots, variables)
    return res

