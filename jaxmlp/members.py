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
from jaxmlp import compile_cache, hosts, train
from jaxmlp.config import Group, SweepConfig
from jaxmlp.errors import UsageError
from jaxmlp.layout import Layout, Unit, plan, sweep_devices  # noqa: F401  (sweep_devices: public here too)
from jaxmlp.layout import pack as pack_units
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


# The last dataset put on the devices, with what made it: a search trains batch after batch of one
# dataset (and a script may run sweep after sweep), and splitting it and copying it to every device again
# cost each new sweep 0.03-0.06 s here. One entry only, so that no more than one dataset's device copy
# outlives its sweep.
_LAST_DATA: list[tuple[tuple, data_lib.Dataset, "DeviceData"]] = []


def prepare_data(config: SweepConfig, spec: Any, layout: Layout) -> DeviceData:
    """Load a dataset, take the stratified subset, split validation (or folds), put it on the device.
    A dataset object given again with the same split settings and devices reuses its device copy."""
    ds = data_lib.load(spec, config.data_dir)
    key = (config.train_fraction, config.data_seed, config.folds, config.val_fraction, tuple(layout.devices))
    if _LAST_DATA and _LAST_DATA[0][0] == key and _LAST_DATA[0][1] is ds:
        return _LAST_DATA[0][2]
    dd = _put_data(config, ds, layout)
    _LAST_DATA[:] = [(key, ds, dd)]
    return dd


def _put_data(config: SweepConfig, ds: data_lib.Dataset, layout: Layout) -> DeviceData:
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
    units: list[Unit]               # the planned layout (a sweep's state may be repacked: SweepState.layout)
    programs: list[GroupProgram]    # by group, for its planned units' shape
    inputs: list[tuple[dict, train.Stream]]
    shaped: dict[tuple, GroupProgram] = field(default_factory=dict)   # programs of repacked units' shapes
    used: set[int] = field(default_factory=set)   # ids of the epoch programs this sweep has run
    compiled_s: float = 0.0   # seconds this sweep spent compiling (programs may come compiled from an earlier one)
    repack: bool | str = "auto"   # run_sweep's: whether members that stop leave the batch (see repack)

    @property
    def size(self) -> int:
        return sum(g.size for g in self.groups)

    def program(self, unit: Unit) -> GroupProgram:
        """The compiled programs of `unit`'s shape: its group's planned ones, or built for a repacked shape
        (one per bucketed shape, so a sweep whose members stop compiles a handful at most)."""
        planned = self.programs[unit.group]
        first = next(u for u in self.units if u.group == unit.group)
        if (unit.shape, unit.shard_axis) == (first.shape, first.shard_axis):
            return planned
        key = (unit.group, unit.shape, unit.shard_axis)
        if key not in self.shaped:
            dd = self.group_data(unit.group)
            self.shaped[key] = build_program(self.config, planned.setup, planned.info, unit, len(self.layout.devices),
                                             dd.n_train)
        return self.shaped[key]

    def compile_s(self) -> float:
        """Seconds this sweep has spent compiling epoch programs so far."""
        return self.compiled_s

    def group_data(self, g: int) -> DeviceData:
        return self.data[data_lib.describe(self.groups[g].static["dataset"])]

    def describe(self) -> str:
        return self.layout.describe(self.size, len(self.groups), len(self.units))


@dataclass
class SweepState:
    """What changes while a sweep trains, and what a checkpoint holds: the per-unit stacked member
    states, the number of epochs completed, one history record per completed epoch, the layout the
    members train in now (the planned units, or repacked ones once members stopped: :func:`repack`) with
    each unit's inputs, and how members stopped by a schedule ended (:func:`stop`)."""

    epoch: int
    units: list[train.MemberState]
    history: list[dict[str, Any]] = field(default_factory=list)
    layout: list[Unit] | None = None                  # None: the planned units (Prepared.units)
    inputs: list[tuple[dict, train.Stream]] | None = None
    status: dict[int, dict[str, Any]] = field(default_factory=dict)   # member index -> {"status", "epoch", ...}
    overrides: dict[int, dict[str, float]] = field(default_factory=dict)   # member -> values set by a schedule
    events: list[dict[str, Any]] = field(default_factory=list)   # what schedules did (e.g. PBT's exploits)
    started: dict[int, int] = field(default_factory=dict)   # member -> epochs completed before it started (if > 0)
    spent: dict[str, float] = field(default_factory=dict)   # time and samples of the sessions that trained it

    def layout_of(self, prep: "Prepared") -> list[Unit]:
        """The units the members now live in."""
        return self.layout if self.layout is not None else prep.units

    def placed(self, prep: "Prepared") -> list[tuple[Unit, train.MemberState, tuple[dict, train.Stream]]]:
        """(unit, its member states, its inputs) for every unit the members now live in."""
        inputs = self.inputs if self.inputs is not None else prep.inputs
        return list(zip(self.layout_of(prep), self.units, inputs))


def prepare(config: SweepConfig) -> Prepared:
    """Validate the config, load data to the device, trace each group, plan units, build the programs."""
    config.validate()
    compile_cache.enable()
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


# One small program for the streams' keys (run eagerly, each of its operations would compile on its own).
_stream_keys = jax.jit(jax.vmap(train.member_key))


def unit_inputs(group: Group, program: GroupProgram, unit: Unit, dd: DeviceData, layout: Layout,
                overrides: dict[int, dict[str, float]] | None = None) -> tuple[dict, train.Stream]:
    """The unit's hyperparameter arrays (s, h) and stream arrays (s, ...), placed on the mesh; `overrides`:
    values a schedule set for some members (see :func:`exploit`)."""
    hp = unit_hparams(group, program.info, unit, overrides)
    pairs = [group.streams[i] for i in unit.streams]
    folds = [f for _, f in pairs]
    keys = _stream_keys(np.array([s for s, _ in pairs], np.uint32), np.array(folds, np.uint32))
    stream = train.Stream(keys, dd.train_idx[folds], dd.val_idx[folds])
    return hosts.put(hp, layout.members(unit)), hosts.put(stream, layout.streams(unit))


def compile_ahead(prep: Prepared) -> None:
    """Start compiling each planned program's epoch and test in the background, from the shapes its
    members' states will have, so that the compiles overlap with initialising (or restoring) them."""
    for unit, (hp, stream) in zip(prep.units, prep.inputs):
        program = prep.programs[unit.group]
        if not program.needs_compile():
            continue
        _compile_ahead(prep, program, unit, hp, stream, test=True)


def compile_ahead_for(config: SweepConfig) -> None:
    """Build `config`'s programs and start compiling them in the background, as a sweep of it will. Its
    datasets may be stand-ins with the real labels and shapes (:func:`jaxmlp.data.stand_in`): programs
    depend on those alone, and a sweep of the real data then finds them built and compiling (programs
    are shared within a process by what they depend on). Lets a caller compile while its data loads."""
    compile_ahead(prepare(config))


def _compile_ahead(prep: Prepared, program: GroupProgram, unit: Unit, hp: dict, stream: train.Stream,
                   test: bool) -> None:
    """Start compiling `program`'s epoch (and `test`) for `unit`, from the shapes (and placement) its
    member states will have, without making them."""
    sharding = prep.layout.members(unit)
    state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                         jax.eval_shape(program.init, hp, stream))
    dd = prep.group_data(unit.group)
    program.compile_ahead((state, hp, stream, dd.pool, jnp.int32(0)), (state, hp, stream, dd.test) if test else None)


def initial_state(prep: Prepared) -> SweepState:
    """Fresh member states for every unit, placed on the member mesh."""
    states = []
    for unit, (hp, stream) in zip(prep.units, prep.inputs):
        states.append(jax.device_put(prep.programs[unit.group].init(hp, stream), prep.layout.members(unit)))
    return SweepState(0, states, [], list(prep.units), list(prep.inputs))


def run_epoch(prep: Prepared, state: SweepState, on_unit: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train every unit one epoch (in place in `state`); return this epoch's history record.
    `on_unit(epoch, unit)` is called before each unit trains (see :class:`jaxmlp.callbacks.Callback`).

    The record has one entry per member (by global index) for each metric, ``None`` for members that
    had already stopped, and the list of members still active afterwards. Units whose members have all
    stopped are skipped: they cost nothing.
    """
    n = prep.size
    record: dict[str, Any] = {"epoch": state.epoch + 1, **{m: [None] * n for m in METRICS},
                              "active": [False] * n}
    for u, (unit, st, (hp, stream)) in enumerate(state.placed(prep)):
        was_active = hosts.get(st.active)
        if not (was_active & unit.real).any():
            continue
        if on_unit is not None:
            on_unit(state.epoch + 1, u)
        args = (st, hp, stream, prep.group_data(unit.group).pool, jnp.int32(state.epoch))
        program = prep.program(unit)
        prep.used.add(id(program))
        before = program.compile_s
        st, metrics = program.run_epoch(args)
        prep.compiled_s += program.compile_s - before
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
    return not any((hosts.get(st.active) & unit.real).any() for unit, st, _ in state.placed(prep))


def stop(prep: Prepared, state: SweepState, indices: Any, status: str = "pruned", **info: Any) -> list[int]:
    """Stop members `indices` (global) now, as patience does: their state no longer changes, and their
    numbers are those of their best (with early stopping) or last epoch. Each is recorded with `status`
    (e.g. ``"pruned"``) and `info` (e.g. ``rung=1``) for ``results.json``. Members already stopped are left
    as they are. Returns the members this stopped. Every process must call it alike."""
    wanted = {int(i) for i in indices}
    stopped = []
    for u, (unit, st, _) in enumerate(state.placed(prep)):
        mask = np.isin(unit.index, list(wanted)) & unit.real
        if not mask.any():
            continue
        active = hosts.get(st.active)
        hit = mask & active
        if not hit.any():
            continue
        state.units[u] = st._replace(active=hosts.put(active & ~hit, prep.layout.members(unit)))
        for a, b in zip(*np.nonzero(hit)):
            i = int(unit.index[a, b])
            stopped.append(i)
            state.status[i] = {"status": status, "epoch": state.epoch, **info}
    return sorted(stopped)


def hold(prep: Prepared, state: SweepState, indices: Any) -> list[int]:
    """Keep members `indices` waiting (untrained, costing nothing) until :func:`start`; before epoch 1."""
    if state.epoch:
        raise UsageError("members can be held back only before the first epoch; stop them instead")
    return stop(prep, state, indices, "waiting")


def start(prep: Prepared, state: SweepState, indices: Any) -> list[int]:
    """Start waiting members `indices` (see :func:`hold`) from the next epoch: they train from their
    initial state, with the epochs still left. Returns those started."""
    wanted = {int(i) for i in indices}
    started = []
    for u, (unit, st, _) in enumerate(state.placed(prep)):
        hit = np.isin(unit.index, [i for i in wanted if state.status.get(i, {}).get("status") == "waiting"]) & unit.real
        if not hit.any():
            continue
        active = hosts.get(st.active)
        state.units[u] = st._replace(active=hosts.put(active | hit, prep.layout.members(unit)))
        for a, b in zip(*np.nonzero(hit)):
            i = int(unit.index[a, b])
            del state.status[i]
            if state.epoch:
                state.started[i] = state.epoch
            started.append(i)
    return sorted(started)


def _member_places(prep: Prepared, state: SweepState) -> dict[int, tuple[int, int, int]]:
    """Global member index -> (unit position, row, column) where it lives now."""
    return {i: (u, a, b) for u, (unit, _, _) in enumerate(state.placed(prep)) for a, b, i in unit.members()}


# Repacking compiles the epoch for a new shape (1.5-3 s on this project's 2-core CPU, whatever the
# model). "auto" repacks only when the training it saves is larger: the freed member-epochs' arithmetic,
# 6 FLOPs per weight and sample, against what the device does in about that time. A fixed count, not a
# timing, so that the decision (and the layout) is the same when a killed sweep resumes.
REPACK_MIN_FLOPS = {"cpu": 1e12}
REPACK_MIN_FLOPS_ACCELERATOR = 1e14


def _repacked(prep: Prepared, state: SweepState, g: int, active: list[tuple[int, int, int]], capacity: int,
              factor: float, when: bool | str) -> list[Unit] | None:
    """The units group g's `active` members ((stream, point, index)) would be packed into, now taking
    `capacity` places, or None when repacking would not pay (see :func:`repack`)."""
    chunk = prep.config.chunk_size or max(u.real.size for u in prep.units if u.group == g)
    new_units = pack_units(g, active, chunk, len(prep.layout.devices))
    new_capacity = sum(unit.real.size for unit in new_units)
    if new_capacity > factor * capacity:
        return None
    saved = ((capacity - new_capacity) * (prep.config.epochs - state.epoch) * 6
             * prep.programs[g].info.n_params * prep.group_data(g).n_train)
    platform = prep.layout.devices[0].platform
    if when == "auto" and saved < REPACK_MIN_FLOPS.get(platform, REPACK_MIN_FLOPS_ACCELERATOR):
        return None
    return new_units


def _live(prep: Prepared, state: SweepState) -> dict[int, tuple[list[int], list[tuple[int, ...]], int]]:
    """For each group with members training, in group order: its units holding some, those members
    (stream, point, index, unit position, row, column), and the places those units take."""
    out: dict[int, tuple[list[int], list[tuple[int, ...]], int]] = {}
    for u, (unit, st, _) in enumerate(state.placed(prep)):
        act = hosts.get(st.active) & unit.real
        if act.any():
            units, active, capacity = out.get(unit.group, ([], [], 0))
            active += [(unit.streams[a], int(unit.points[a, b]), i, u, a, b) for a, b, i in unit.members() if act[a, b]]
            out[unit.group] = ([*units, u], active, capacity + unit.real.size)
    return dict(sorted(out.items()))


def expect(prep: Prepared, state: SweepState, n: int, factor: float = 0.5) -> int:
    """Start compiling, in the background, the epoch programs that a repack would need were only `n` of
    the members training now to go on (taken as spread evenly over their streams and groups), so a
    schedule that knows how many it will keep (successive halving) does not wait for the compile when it
    stops the others. Returns the number of programs started. A guess: a repack of another shape compiles
    then, as without it."""
    started = 0
    live = _live(prep, state)
    total = sum(len(active) for _, active, _ in live.values())
    for g, (_, active, capacity) in live.items():
        keep = math.ceil(n * len(active) / max(total, 1))
        streams = sorted({m[0] for m in active})
        per_stream = math.ceil(keep / len(streams))
        guess = [m[:3] for s in streams for m in [m for m in active if m[0] == s][:per_stream]]
        new_units = (_repacked(prep, state, g, guess, capacity, factor, prep.repack)
                     if prep.repack and 0 < len(guess) < len(active) else None)
        for unit in new_units or []:
            program = prep.program(unit)
            if not program.needs_compile():
                continue
            hp, stream = unit_inputs(prep.groups[g], program, unit, prep.group_data(g), prep.layout, state.overrides)
            _compile_ahead(prep, program, unit, hp, stream, test=False)
            started += 1
    return started


def repack(prep: Prepared, state: SweepState, factor: float = 0.5, when: bool | str = "auto") -> bool:
    """Pack the members still training into smaller units when that at least halves (`factor`) a group's
    work per epoch and (`when` ``"auto"``) the arithmetic it saves over the remaining epochs outweighs a
    compile (:data:`REPACK_MIN_FLOPS`; True: whenever it halves the work). Units whose members all
    stopped stay as they are (never trained again) and give up the moved members. The new layout is a
    function of which members still train (:func:`jaxmlp.layout.pack`), so a resumed sweep repacks as an
    uninterrupted one did. Returns whether anything moved. Every process must call it alike (it gathers
    the states to the host and places them again)."""
    placed = state.placed(prep)
    moved_any = False
    for g, (live, active, capacity) in _live(prep, state).items():
        group = prep.groups[g]
        new_units = _repacked(prep, state, g, [m[:3] for m in active], capacity, factor, when)
        if new_units is None:
            continue
        # Every live member's state as one row of a flat (member, ...) array per leaf, so a new unit's
        # states are one fancy-indexing copy per leaf (not a Python loop over members and leaves).
        host = [hosts.get(placed[u][1]) for u in live]
        offset = dict(zip(live, np.cumsum([0] + [placed[u][0].real.size for u in live])))
        flat = jax.tree.map(lambda *leaves: np.concatenate([x.reshape(-1, *x.shape[2:]) for x in leaves]), *host)
        row_of = {i: offset[u] + a * placed[u][0].shape[1] + b for _, _, i, u, a, b in active}
        for unit in new_units:
            # Padding repeats the last real member of its row (pack put its point there): copy its state.
            last = unit.shape[1] - 1 - np.argmax(unit.real[:, ::-1], axis=1)
            index = np.where(unit.real, unit.index, unit.index[np.arange(unit.shape[0]), last][:, None])
            rows = np.vectorize(row_of.__getitem__, otypes=[np.int64])(index)
            st = jax.tree.map(lambda leaf, rows=rows: leaf[rows], flat)
            state.units.append(hosts.put(st, prep.layout.members(unit)))
            state.layout.append(unit)
            state.inputs.append(unit_inputs(group, prep.program(unit), unit, prep.group_data(g), prep.layout,
                                            state.overrides))
        moved = {i for _, _, i, *_ in active}
        for u in live:
            state.layout[u] = state.layout[u].without(moved)
        moved_any = True
    if moved_any:   # units left with no member of their own hold nothing: drop them (frees their memory)
        keep = [u for u, unit in enumerate(state.layout) if unit.real.any()]
        state.layout = [state.layout[u] for u in keep]
        state.units = [state.units[u] for u in keep]
        state.inputs = [state.inputs[u] for u in keep]
    return moved_any


def canonical(prep: Prepared, state: SweepState) -> SweepState:
    """`state` in the planned layout (members moved back from repacked units), for the end-of-run reads
    that use each group's planned programs. The same state when it was never repacked."""
    if state.layout is None or (len(state.layout) == len(prep.units)
                                and all(a is b for a, b in zip(state.layout, prep.units))):
        return state
    from jaxmlp import checkpoint_state   # checkpoint_state imports this module

    grids = {f"group_{g}": checkpoint_state.grid(prep, state, g) for g in range(len(prep.groups))}
    meta = {"epoch": state.epoch, "history": state.history, "status": state.status, "events": state.events,
            "overrides": state.overrides, "started": state.started}
    return checkpoint_state.sweep_state(prep, grids, meta, planned=True)


def exploit(prep: Prepared, state: SweepState, pairs: list[tuple[int, int]],
            hparams: dict[int, dict[str, float]] | None = None) -> None:
    """For each (dst, src) in `pairs`, member dst takes member src's whole training state (variables,
    optimizer state, best-epoch bookkeeping; it keeps its own stream and active flag); then members in
    `hparams` train on with those values (by name) from the next epoch on, without recompiling. Members
    must be in one group per pair. Every process must call it alike (states pass through the host)."""
    places = _member_places(prep, state)
    placed = state.placed(prep)
    touched = {places[d][0] for d, _ in pairs} | {places[i][0] for i in (hparams or {})}
    if pairs:
        host = {u: hosts.get(placed[u][1]) for u in {places[i][0] for pair in pairs for i in pair}}
        copies = {u: jax.tree.map(np.array, host[u]) for u in {places[d][0] for d, _ in pairs}}
        for dst, src in pairs:
            (ud, ad, bd), (us, as_, bs) = places[dst], places[src]
            if placed[ud][0].group != placed[us][0].group:
                raise UsageError(f"member {dst} cannot take member {src}'s state: they are in different groups")
            keep = (copies[ud].active[ad, bd].copy(), copies[ud].diverged_epoch[ad, bd].copy())

            def put(d, s_, ad=ad, bd=bd, as_=as_, bs=bs):
                d[ad, bd] = s_[as_, bs]
            jax.tree.map(put, copies[ud], host[us])
            copies[ud].active[ad, bd], copies[ud].diverged_epoch[ad, bd] = keep
            # Its best epoch must be one it trains from here on: the history holds its own numbers, not src's.
            copies[ud].best_val_loss[ad, bd], copies[ud].bad_epochs[ad, bd] = np.inf, 0
        for u, tree in copies.items():
            state.units[u] = hosts.put(tree, prep.layout.members(placed[u][0]))
    for i, values in (hparams or {}).items():
        state.overrides.setdefault(int(i), {}).update({k: float(v) for k, v in values.items()})
    for u in touched:
        unit = placed[u][0]
        state.inputs[u] = unit_inputs(prep.groups[unit.group], prep.program(unit), unit,
                                      prep.group_data(unit.group), prep.layout, state.overrides)


def test_metrics(prep: Prepared, state: SweepState) -> dict[int, dict[str, float]]:
    """Test loss and accuracy of every member's final (best, with early stopping) parameters."""
    out = {}
    state = canonical(prep, state)
    for u, (unit, _, (hp, stream)) in enumerate(state.placed(prep)):
        metrics = hosts.get(prep.programs[unit.group].run_test((state.units[u], hp, stream,
                                                                prep.group_data(unit.group).test)))
        for a, b, i in unit.members():
            out[i] = {k: float(v[a, b]) for k, v in metrics.items()}
    return out


def member_records(prep: Prepared, state: SweepState) -> list[dict[str, Any]]:
    """One record per member: settings, best epoch, epochs run, early stop, val and test numbers."""
    state = canonical(prep, state)
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
            # A member that started late (jaxmlp.population.Population.start) counts its epochs from there.
            line = state.history[state.started.get(i, 0) + used - 1] if used >= 1 else None
            # A member that diverged keeps the numbers of its last finite epoch, or none at all when that was
            # its initialisation (an untrained model's numbers are not a result).
            test = tests[i] if line else {"loss": None, "accuracy": None}
            ended = _ended(prep, state, i, epochs_run, bool(f["active"]), diverged)
            records.append({
                "index": i, "hparams": hparams, "best_epoch": best, "epochs_run": epochs_run,
                "status": ended["status"], **{k: v for k, v in ended.items() if k not in ("status", "epoch")},
                **({"started_epoch": state.started[i]} if i in state.started else {}),
                # The values a schedule (PBT) set last; "hparams" are those the member started with.
                **({"final_hparams": {**hparams, **state.overrides[i]}} if i in state.overrides else {}),
                "stopped_early": ended["status"] == "stopped_early",
                "diverged": bool(diverged), "diverged_epoch": diverged or None,
                "val": {"loss": line["val_loss"][i] if line else None,
                        "accuracy": line["val_accuracy"][i] if line else None},
                "test": {k: v if v is not None and math.isfinite(v) else None for k, v in test.items()},
            })
    return records


def _ended(prep: Prepared, state: SweepState, i: int, epochs_run: int, active: bool, diverged: int) -> dict[str, Any]:
    """How member i ended: ``diverged``; what a schedule recorded (``pruned`` with its rung, ...);
    ``stopped_early`` (patience); or ``finished`` (trained every epoch, or still training at the end)."""
    if diverged:
        return {"status": "diverged"}
    if i in state.status:
        return dict(state.status[i])
    if epochs_run < prep.config.epochs and not active:
        return {"status": "stopped_early"}
    return {"status": "finished"}


def member_epochs(state: SweepState) -> int:
    """Member-epochs actually trained (each member counts once per epoch it trained)."""
    return sum(sum(v is not None for v in record["val_loss"]) for record in state.history)


def member_variables(prep: Prepared, state: SweepState) -> list[Any]:
    """Every member's final variables (the best epoch's with early stopping) as numpy trees, by index."""
    out: dict[int, Any] = {}
    state = canonical(prep, state)
    for u, unit in enumerate(prep.units):
        host = hosts.get(train.final_variables(prep.programs[unit.group].setup, state.units[u]))
        for a, b, i in unit.members():
            out[i] = jax.tree.map(lambda v: v[a, b], host)
    return [out[i] for i in range(prep.size)]
