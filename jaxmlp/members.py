"""The member axis of a sweep: prepare (data, layout, programs), train epochs, read members back.

:func:`prepare` fixes everything for the life of a sweep (:class:`Prepared`): the data on the device, the
layout (:mod:`jaxmlp.layout`), each group's traced facts and compiled programs (:mod:`jaxmlp.program`),
and each unit's inputs. :class:`SweepState` is what changes while it trains (and what a checkpoint holds).

Hosts. Under ``jax.distributed`` the mesh spans every process's devices (see :mod:`jaxmlp.hosts`): each
process runs this same code, holds its slice of every unit, and gets whole copies of metrics and state
back through ``hosts.get``, so all processes take the same decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import data as data_lib
from jaxmlp import hosts, train
from jaxmlp.config import Group, SweepConfig
from jaxmlp.errors import UsageError
from jaxmlp.layout import Layout, Unit, plan, sweep_devices  # noqa: F401  (sweep_devices: public here too)
from jaxmlp.program import GroupProgram, build_program, inspect_group, setup_for, unit_hparams

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


@dataclass
class DeviceData:
    """One dataset on the device: the training pool and the test split, with per-fold index sets."""

    dataset: data_lib.Dataset
    pool: dict[str, jax.Array]      # x: inputs (N, ...), y: int32 (N,)
    test: dict[str, jax.Array]
    train_idx: np.ndarray           # (F, n_train) positions into the pool; F = folds or 1
    val_idx: np.ndarray             # (F, n_val)

    @property
    def n_train(self) -> int:
        return self.train_idx.shape[1]

    @property
    def source(self) -> str:
        return self.dataset.source

    @property
    def fingerprint(self) -> str:
        """sha256 of the dataset's arrays (see :meth:`jaxmlp.data.Dataset.fingerprint`)."""
        return self.dataset.fingerprint


def prepare_data(config: SweepConfig, spec: Any, layout: Layout) -> DeviceData:
    """Load a dataset, take the stratified subset, split validation (or folds), put it on the device."""
    ds = data_lib.load(spec, config.data_dir)
    keep = data_lib.stratified_subset(ds.train_labels, config.train_fraction, config.data_seed)
    labels = ds.train_labels[keep]
    if config.folds:
        train_idx, val_idx = data_lib.kfold_indices(labels, config.folds, config.data_seed)
    else:
        tr, va = data_lib.train_val_split(labels, config.val_fraction, config.data_seed)
        train_idx, val_idx = tr[None], va[None]
    # Every process loaded the same arrays: each fills its own devices' copies (hosts.put).
    pool = hosts.put({"x": ds.train_images[keep], "y": labels.astype(np.int32)}, layout.replicated)
    test = hosts.put({"x": ds.test_images, "y": ds.test_labels.astype(np.int32)}, layout.replicated)
    return DeviceData(ds, pool, test, train_idx.astype(np.int32), val_idx.astype(np.int32))


@dataclass
class Prepared:
    """Everything fixed for the life of a sweep: config, groups, layout, device data, units, programs,
    and each unit's inputs (hyperparameter arrays, streams)."""

    config: SweepConfig
    groups: list[Group]
    layout: Layout
    data: dict[str, DeviceData]     # by dataset name (data_lib.describe)
    units: list[Unit]
    programs: list[GroupProgram]    # by group
    inputs: list[tuple[dict, train.Stream]]

    @property
    def size(self) -> int:
        return sum(g.size for g in self.groups)

    def group_data(self, g: int) -> DeviceData:
        return self.data[data_lib.describe(self.groups[g].static["dataset"])]

    def describe(self) -> str:
        return self.layout.describe(self.size, len(self.groups), len(self.units))


@dataclass
class SweepState:
    """What changes while a sweep trains, and what a checkpoint holds: the per-unit stacked member
    states, the number of epochs completed, and one history record per completed epoch."""

    epoch: int
    units: list[train.MemberState]
    history: list[dict[str, Any]] = field(default_factory=list)


def prepare(config: SweepConfig) -> Prepared:
    """Validate the config, load data to the device, trace each group, plan units, build the programs."""
    config.validate()
    groups = config.groups()
    layout = Layout.of(config)
    names = [data_lib.describe(spec) for spec in config.dataset]
    if len(set(names)) != len(names):
        raise UsageError(f"two datasets of this sweep are named {names}; give each a name of its own")
    datas = {name: prepare_data(config, spec, layout) for name, spec in zip(names, config.dataset)}
    units, programs, inputs = [], [], []
    for gid, group in enumerate(groups):
        dd = datas[data_lib.describe(group.static["dataset"])]
        if group.static["batch_size"] > dd.n_train:
            raise UsageError(f"--batch-size {group.static['batch_size']} is larger than the {dd.n_train} "
                             "training samples; use a smaller batch size or more data")
        setup = setup_for(config, group, dd.dataset, dd.n_train)
        info = inspect_group(group, setup, dd.dataset.num_classes)
        group_units = plan(config, gid, group, info.member_bytes, len(layout.devices))
        programs.append(build_program(config, setup, info, group_units[0], len(layout.devices), dd.n_train))
        for unit in group_units:
            units.append(unit)
            inputs.append(unit_inputs(group, programs[-1], unit, dd, layout))
    return Prepared(config, groups, layout, datas, units, programs, inputs)


def unit_inputs(group: Group, program: GroupProgram, unit: Unit, dd: DeviceData,
                layout: Layout) -> tuple[dict, train.Stream]:
    """The unit's hyperparameter arrays (s, h) and stream arrays (s, ...), placed on the mesh."""
    hp = unit_hparams(group, program.info, unit)
    pairs = [group.streams[i] for i in unit.streams]
    folds = [f for _, f in pairs]
    keys = jax.vmap(train.member_key)(jnp.array([s for s, _ in pairs], jnp.uint32), jnp.array(folds, jnp.uint32))
    stream = train.Stream(keys, dd.train_idx[folds], dd.val_idx[folds])
    return hosts.put(hp, layout.members(unit)), hosts.put(stream, layout.streams(unit))


def initial_state(prep: Prepared) -> SweepState:
    """Fresh member states for every unit, placed on the member mesh."""
    states = []
    for unit, (hp, stream) in zip(prep.units, prep.inputs):
        states.append(jax.device_put(prep.programs[unit.group].init(hp, stream), prep.layout.members(unit)))
    return SweepState(0, states, [])


def run_epoch(prep: Prepared, state: SweepState, on_unit: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train every unit one epoch (in place in `state`); return this epoch's history record.
    `on_unit(epoch, unit)` is called before each unit trains (see :class:`jaxmlp.callbacks.Callback`).

    The record has one entry per member (by global index) for each metric, ``None`` for members that
    had already stopped, and the list of members still active afterwards.
    """
    n = prep.size
    record: dict[str, Any] = {"epoch": state.epoch + 1, **{m: [None] * n for m in METRICS},
                              "active": [False] * n}
    for u, unit in enumerate(prep.units):
        st = state.units[u]
        was_active = hosts.get(st.active)
        if not (was_active & unit.real).any():
            continue
        if on_unit is not None:
            on_unit(state.epoch + 1, u)
        hp, stream = prep.inputs[u]
        args = (st, hp, stream, prep.group_data(unit.group).pool, jnp.int32(state.epoch))
        st, metrics = prep.programs[unit.group].compiled(args)(*args)
        state.units[u] = st
        metrics, now_active, diverged = hosts.get((metrics, st.active, st.diverged_epoch))
        for a, b, i in unit.members():
            record["active"][i] = bool(now_active[a, b])
            # A member that diverged in this epoch has no numbers for it (None: valid JSON, never averaged).
            if was_active[a, b] and diverged[a, b] != state.epoch + 1:
                for m in METRICS:
                    record[m][i] = float(metrics[m][a, b])
    state.epoch += 1
    state.history.append(record)
    return record


def all_stopped(prep: Prepared, state: SweepState) -> bool:
    return not any((hosts.get(st.active) & u.real).any() for u, st in zip(prep.units, state.units))


def test_metrics(prep: Prepared, state: SweepState) -> dict[int, dict[str, float]]:
    """Test loss and accuracy of every member's final (best, with early stopping) parameters."""
    out = {}
    for u, unit in enumerate(prep.units):
        hp, stream = prep.inputs[u]
        metrics = hosts.get(prep.programs[unit.group].test(state.units[u], hp, stream, prep.group_data(unit.group).test))
        for a, b, i in unit.members():
            out[i] = {k: float(v[a, b]) for k, v in metrics.items()}
    return out


def member_records(prep: Prepared, state: SweepState) -> list[dict[str, Any]]:
    """One record per member: settings, best epoch, epochs run, early stop, val and test numbers."""
    tests = test_metrics(prep, state)
    fields = {}
    for u, unit in enumerate(prep.units):
        st = state.units[u]
        host = hosts.get({"best_epoch": st.best_epoch, "epochs_run": st.epochs_run, "active": st.active,
                          "diverged_epoch": st.diverged_epoch})
        for a, b, i in unit.members():
            fields[i] = {k: v[a, b] for k, v in host.items()}
    # Every member records the same settings: those given, and the defaults every group's program reads
    # (an Adam group's β₁ is left out of a sweep that also has an SGD group, which has none).
    common = set.intersection(*(set(p.info.recorded) for p in prep.programs))
    recorded = [n for n in prep.programs[0].info.recorded if n in common]
    records = []
    for g, group in enumerate(prep.groups):
        for offset, hparams in enumerate(group.member_hparams(recorded)):
            i = group.first_index + offset
            f = fields[i]
            epochs_run, best = int(f["epochs_run"]), int(f["best_epoch"])
            diverged = int(f["diverged_epoch"])
            used = best if prep.config.patience > 0 else epochs_run
            line = state.history[used - 1] if used >= 1 else None
            # A member that diverged keeps the numbers of its last finite epoch, or none at all when that was
            # its initialisation (an untrained model's numbers are not a result).
            test = tests[i] if line else {"loss": None, "accuracy": None}
            records.append({
                "index": i, "hparams": hparams, "best_epoch": best, "epochs_run": epochs_run,
                "stopped_early": bool(epochs_run < prep.config.epochs and not f["active"] and not diverged),
                "diverged": bool(diverged), "diverged_epoch": diverged or None,
                "val": {"loss": line["val_loss"][i] if line else None,
                        "accuracy": line["val_accuracy"][i] if line else None},
                "test": {k: v if v is not None and math.isfinite(v) else None for k, v in test.items()},
            })
    return records


def member_variables(prep: Prepared, state: SweepState) -> list[Any]:
    """Every member's final variables (the best epoch's with early stopping) as numpy trees, by index."""
    out: dict[int, Any] = {}
    for u, unit in enumerate(prep.units):
        host = hosts.get(train.final_variables(prep.programs[unit.group].setup, state.units[u]))
        for a, b, i in unit.members():
            out[i] = jax.tree.map(lambda v: v[a, b], host)
    return [out[i] for i in range(prep.size)]
