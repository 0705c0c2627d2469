"""The member axis: a group's grid -> stacked state, trained by one compiled, vmapped program.

Layout. A group's members form a grid of S streams (seed × fold) by H hyperparameter combinations. A
*unit* (a chunk of the group) holds a block of it with shape (s, h): every state leaf has leading axes
(s, h). The epoch is ``vmap`` over streams of ``vmap`` over hyperparameters of
:func:`jaxmlp.train.train_epoch`; in the inner vmap the stream (key, indices) is not batched, so the
minibatch gather, its float conversion and the dropout draws are computed once per stream and the first
layer becomes one wide matmul for all h members.

Scale. Units bound memory (``chunk_size`` members each, padded to one shape so they share one compiled
program). Each unit's members are sharded over the run's devices on a 1-D mesh named ``members``: along
the stream axis when it divides evenly, otherwise along the (padded) hyperparameter axis. Padding members
repeat the last real one and are dropped from every result.

Hosts. Under ``jax.distributed`` the mesh spans every process's devices (see :mod:`jaxmlp.hosts`): each
process runs this same code, holds its slice of every unit, and gets whole copies of metrics and state
back through ``hosts.get``, so all processes take the same decisions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmlp import data as data_lib
from jaxmlp import hosts, models, train
from jaxmlp.config import Group, SweepConfig, ceil_to
from jaxmlp.errors import UsageError

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


# ---- data on the device ------------------------------------------------------------------------------

@dataclass
class DeviceData:
    """One dataset on the device: the training pool and the test split, with per-fold index sets."""

    pool: dict[str, jax.Array]      # x: uint8 (N, 28, 28, 1), y: int32 (N,)
    test: dict[str, jax.Array]
    train_idx: np.ndarray           # (F, n_train) positions into the pool; F = folds or 1
    val_idx: np.ndarray             # (F, n_val)
    source: str

    @property
    def n_train(self) -> int:
        return self.train_idx.shape[1]


def prepare_data(config: SweepConfig, name: str) -> DeviceData:
    """Load a dataset, take the stratified subset, split validation (or folds), put it on the device."""
    ds = data_lib.load(name, config.data_dir)
    keep = data_lib.stratified_subset(ds.train_labels, config.train_fraction, config.data_seed)
    labels = ds.train_labels[keep]
    if config.folds:
        train_idx, val_idx = data_lib.kfold_indices(labels, config.folds, config.data_seed)
    else:
        tr, va = data_lib.train_val_split(labels, config.val_fraction, config.data_seed)
        train_idx, val_idx = tr[None], va[None]
    # Every process loaded the same arrays: each fills its own devices' copies (hosts.put).
    replicated = _replicated(config)
    pool = hosts.put({"x": ds.train_images[keep][..., None], "y": labels.astype(np.int32)}, replicated)
    test = hosts.put({"x": ds.test_images[..., None], "y": ds.test_labels.astype(np.int32)}, replicated)
    return DeviceData(pool, test, train_idx.astype(np.int32), val_idx.astype(np.int32), ds.source)


# ---- devices -----------------------------------------------------------------------------------------

def sweep_devices(config: SweepConfig) -> list[jax.Device]:
    """The devices a sweep's members are sharded over, taken from the run's global device list,
    :func:`jaxmlp.hosts.devices`: in one process its own devices, under ``jax.distributed`` every
    process's.

    ``config.devices`` of them, or by default all, unless some group has fewer members than devices
    (padding would then cost more than the devices give: a single run trains on one device, with all its
    threads). With several processes each one keeps the same number of its own devices, so that every
    process holds a share of each unit (and its whole-copy gathers have something to gather): then
    ``config.devices`` must be a multiple of the process count, and the small-group default is one device
    per process.
    """
    devices = hosts.devices()
    processes = hosts.process_count()
    if config.devices is not None:
        if not 1 <= config.devices <= len(devices):
            where = "this process sees" if processes == 1 else f"the {processes} processes have"
            raise UsageError(f"--devices {config.devices} is not available: {where} {len(devices)} device(s)")
        if config.devices % processes:
            raise UsageError(f"--devices {config.devices} does not split evenly over {processes} processes: "
                             f"use a multiple of {processes}")
        per_process = config.devices // processes
    elif min(g.size for g in config.groups()) < len(devices):
        per_process = 1
    else:
        return devices
    if processes == 1:
        return devices[:per_process]
    by_process: dict[int, list[jax.Device]] = {}
    for d in devices:
        by_process.setdefault(d.process_index, []).append(d)
    return [d for p in sorted(by_process) for d in by_process[p][:per_process]]


def describe_layout(prep: "Prepared") -> str:
    """One line saying how the sweep is laid out: members, groups, chunks, devices, member blocks."""
    devices = sweep_devices(prep.config)
    kinds = sorted({d.device_kind for d in devices})
    processes = hosts.process_count()
    return (f"{prep.size} member(s) in {len(prep.groups)} group(s), {len(prep.units)} chunk(s); "
            f"sharded over {len(devices)} {'/'.join(kinds)} device(s)"
            + ("" if len(devices) > 1 else " (one device)")
            + (f" in {processes} processes" if processes > 1 else ""))


def _mesh(config: SweepConfig) -> Mesh:
    # Auto axis types: with Explicit ones (the default of jax.make_mesh) vmap(tx.init) over a sharded tree fails.
    return Mesh(np.array(sweep_devices(config)), ("members",), axis_types=(jax.sharding.AxisType.Auto,))


def _replicated(config: SweepConfig) -> NamedSharding:
    return NamedSharding(_mesh(config), P())


# ---- planning ----------------------------------------------------------------------------------------

@dataclass
class Unit:
    """A chunk of a group: stream and hparam positions (padded), the grid shape, and its sharding."""

    group: int
    streams: list[int]              # positions in group.streams, length s (padded)
    hparams: list[int]              # positions in group.hparams, length h (padded)
    real: np.ndarray                # bool (s, h): False for padding
    index: np.ndarray               # int (s, h): global member index (-1 for padding)
    shard_axis: int                 # 0: streams sharded over devices, 1: hparams

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.streams), len(self.hparams)


def _n_weights(group: Group) -> int:
    """Weight-matrix entries of one member's model (what its optimizer state scales with)."""
    hidden = list(group.static["hidden"])
    if group.static["arch"] == "cnn":
        return 3 * 3 * 32 + 3 * 3 * 32 * 64 + 7 * 7 * 64 * hidden[0] + sum(
            a * b for a, b in zip(hidden, hidden[1:] + [10]))
    widths = [28 * 28] + hidden + [10]
    return sum(a * b for a, b in zip(widths, widths[1:]))


def member_bytes(group: Group) -> int:
    """A rough upper estimate of the memory one member needs while training (for chunking)."""
    hidden = list(group.static["hidden"])
    widths = ([28 * 28 * 32, 14 * 14 * 64] if group.static["arch"] == "cnn" else [28 * 28]) + hidden + [10]
    state = 6 * _n_weights(group) * 4                # params, best params, optimizer moments, grads, update
    batch = max(group.static["batch_size"], 500)     # training batch or evaluation batch
    activations = 4 * batch * sum(widths[1:]) * 4    # forward and backward, a few copies
    return state + activations


def memory_budget() -> int:
    """Bytes a sweep may use: half of the first device's memory (or of the host's RAM on CPU)."""
    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 2
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def plan(config: SweepConfig, group_id: int, group: Group) -> list[Unit]:
    """Split a group into units of at most ``chunk_size`` members, padded for the device count."""
    S, H = len(group.streams), len(group.hparams)
    d = len(sweep_devices(config))
    fit = max(1, memory_budget() // member_bytes(group))
    chunk = config.chunk_size or fit
    if chunk > fit:
        raise UsageError(f"--chunk-size {chunk} needs about {chunk * member_bytes(group) / 2**30:.1f} GiB; "
                         f"about {fit} members fit in memory here: use --chunk-size {fit} or leave it out")
    if chunk >= S * H:
        s, h = S, H
    elif chunk >= H:
        s, h = chunk // H, H
    else:
        s, h = 1, chunk
    shard_axis = 0 if s % d == 0 else 1
    h_pad = h if shard_axis == 0 else ceil_to(h, d)
    units = []
    for s0 in range(0, S, s):
        for h0 in range(0, H, h):
            streams = [min(i, S - 1) for i in range(s0, s0 + s)]
            hps = [min(i, H - 1) for i in range(h0, h0 + h_pad)]
            real = np.array([[s0 + a < S and h0 + b < H and b < h for b in range(h_pad)] for a in range(s)])
            index = np.array([[group.first_index + st * H + hp for hp in hps] for st in streams])
            units.append(Unit(group_id, streams, hps, real, np.where(real, index, -1), shard_axis))
    return units


# ---- compiled programs -------------------------------------------------------------------------------

def _grid_map(fn: Callable, member_args: int, shared_args: int, block: int, split: int,
              prelude: Callable | None = None) -> Callable:
    """Map `fn` (one member) over a unit's (s, h) grid.

    The first `member_args` arguments carry both axes, the next (the stream) only the stream axis, the
    last `shared_args` none. Streams are vmapped. The h members of a stream are split into `split`
    vmapped parts (one per device when h is sharded), each walked by ``lax.map`` in vmapped blocks of
    `block` members: on a CPU a block whose weights and optimizer moments fit in cache beats one wide vmap.
    `prelude`, given the stream and shared arguments, makes extra arguments once per stream, passed to
    `fn` after them (work the members of a stream share, which the walk would otherwise redo per block).
    """
    def over_h(*args):
        per_member, rest = args[:member_args], args[member_args:]
        if prelude is not None:
            rest = (*rest, *prelude(*rest))
        h = jax.tree.leaves(per_member)[0].shape[0]
        parts = jax.tree.map(lambda a: a.reshape(split, h // split, *a.shape[1:]), per_member)
        walk = lambda part: jax.lax.map(lambda m: fn(*m, *rest), part, batch_size=min(block, h // split))
        out = jax.vmap(walk)(parts)
        return jax.tree.map(lambda a: a.reshape(h, *a.shape[2:]), out)

    return jax.vmap(over_h, in_axes=(0,) * member_args + (0,) + (None,) * shared_args)


def member_block(config: SweepConfig, group: Group) -> int:
    """Members vmapped together inside a stream (the rest are walked one block after another).

    Accelerators want every member at once. A CPU is fastest when a block's parameters, gradients and
    optimizer moments stay in its cache (measured: 22 members of 784-256-128-10 vmapped at once ran at
    7.5 s an epoch against 5.1 s in blocks of one, on 2 devices); tiny models take all at once.
    """
    if config.member_block is not None:
        return config.member_block
    if jax.local_devices()[0].platform != "cpu":
        return 1 << 30
    return max(1, CPU_BLOCK_BYTES // (5 * 4 * _n_weights(group)))


CPU_BLOCK_BYTES = 4 << 20   # about a core's share of L2+L3 here
NOISE_BYTES = 256 << 20     # the most a unit's shared dropout draws for an epoch may take


@dataclass
class GroupProgram:
    """The compiled functions of one group (shared by its units, which all have one shape)."""

    setup: train.Setup
    init: Callable
    epoch: Callable
    test: Callable
    compiled_epoch: Callable | None = None   # the epoch, compiled ahead of time on first use
    compile_s: float = 0.0


def setup_for(config: SweepConfig, group: Group, n_train: int) -> train.Setup:
    st = group.static
    model = models.make_model(st["arch"], st["hidden"], st["activation"], st["batch_norm"])
    steps = config.epochs * train.steps_per_epoch(n_train, st["batch_size"])
    return train.Setup(model, st["optimizer"], st["batch_size"], config.patience,
                       lr_schedule=config.lr_schedule, total_steps=steps,
                       use_l1=any(v > 0 for v in config.l1), use_l2=any(v > 0 for v in config.l2),
                       use_dropout=any(v > 0 for v in config.dropout))


def build_program(config: SweepConfig, group: Group, unit: Unit, n_train: int) -> GroupProgram:
    """The jitted init, epoch and test functions for the units of a group (which share one shape)."""
    setup = setup_for(config, group, n_train)
    block = member_block(config, group)
    split = len(sweep_devices(config)) if unit.shard_axis == 1 else 1
    grid = lambda fn, member_args, shared_args, prelude=None: _grid_map(fn, member_args, shared_args, block,
                                                                       split, prelude)
    # When a stream's members are walked in several blocks, each block would make the stream's dropout
    # draws again (threefry: ~7 % of an MLP epoch here): make them once per stream and epoch, if small.
    shared_noise = (setup.use_dropout and unit.shape[1] // split > block
                    and unit.shape[0] * train.epoch_noise_bytes(setup, n_train) <= NOISE_BYTES)
    noise = (lambda stream, data, epoch: (train.epoch_noise(setup, stream, epoch),)) if shared_noise else None

    def init(hp, stream):
        return train.init(setup, hp, stream["key"])

    def test(state, stream, test_data):
        variables = train.final_variables(setup, state)
        return train.evaluate(setup, variables, test_data, jnp.arange(test_data["y"].shape[0]))

    def evaluate_test(state, stream, test_data):
        return grid(test, 1, 1)(state, stream, test_data)

    return GroupProgram(
        setup,
        init=jax.jit(grid(init, 1, 0)),
        epoch=jax.jit(grid(partial(train.train_epoch, setup), 2, 2, noise), donate_argnums=(0,)),
        test=jax.jit(evaluate_test),
    )


# ---- unit inputs -------------------------------------------------------------------------------------

def unit_inputs(config: SweepConfig, group: Group, unit: Unit, dd: DeviceData) -> tuple[dict, dict]:
    """The unit's hyperparameter arrays (s, h) and stream arrays (s, ...), placed on the mesh."""
    hps = group.hparams
    hp = {k: np.array([[hps[j][k] for j in unit.hparams] for _ in unit.streams], np.float32)
          for k in train.HPARAMS}
    pairs = [group.streams[i] for i in unit.streams]
    folds = [f for _, f in pairs]
    keys = jax.vmap(train.member_key)(jnp.array([s for s, _ in pairs], jnp.uint32),
                                      jnp.array(folds, jnp.uint32))
    stream = {"key": keys, "train_idx": dd.train_idx[folds], "val_idx": dd.val_idx[folds]}
    per_stream = NamedSharding(_mesh(config), P("members") if unit.shard_axis == 0 else P())
    return hosts.put(hp, member_sharding(config, unit)), hosts.put(stream, per_stream)


def member_sharding(config: SweepConfig, unit: Unit) -> NamedSharding:
    return NamedSharding(_mesh(config), P("members") if unit.shard_axis == 0 else P(None, "members"))


# ---- training ----------------------------------------------------------------------------------------

@dataclass
class Prepared:
    """Everything fixed for the life of a sweep: config, groups, device data, units, programs, inputs."""

    config: SweepConfig
    groups: list[Group]
    data: dict[str, DeviceData]
    units: list[Unit]
    programs: list[GroupProgram]
    inputs: list[tuple[dict, dict]]

    @property
    def size(self) -> int:
        return sum(g.size for g in self.groups)


@dataclass
class SweepState:
    """What changes while a sweep trains, and what a checkpoint holds: the per-unit stacked member
    states, the number of epochs completed, and one history record per completed epoch."""

    epoch: int
    units: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)


def prepare(config: SweepConfig) -> Prepared:
    """Validate the config, load data to the device, plan units and build the compiled programs."""
    config.validate()
    groups = config.groups()
    datasets = {name: prepare_data(config, name) for name in config.dataset}
    units, programs, inputs = [], [], []
    for gid, group in enumerate(groups):
        dd = datasets[group.static["dataset"]]
        if group.static["batch_size"] > dd.n_train:
            raise UsageError(f"--batch-size {group.static['batch_size']} is larger than the {dd.n_train} "
                             "training samples; use a smaller batch size or more data")
        group_units = plan(config, gid, group)
        programs.append(build_program(config, group, group_units[0], dd.n_train))
        for unit in group_units:
            units.append(unit)
            inputs.append(unit_inputs(config, group, unit, dd))
    return Prepared(config, groups, datasets, units, programs, inputs)


def initial_state(prep: Prepared) -> SweepState:
    """Fresh member states for every unit, placed on the member mesh."""
    states = []
    for unit, (hp, stream) in zip(prep.units, prep.inputs):
        init = prep.programs[unit.group].init
        states.append(jax.device_put(init(hp, stream), member_sharding(prep.config, unit)))
    return SweepState(0, states, [])


def _compiled_epoch(prep: Prepared, unit: Unit, args: tuple) -> Callable:
    prog = prep.programs[unit.group]
    if prog.compiled_epoch is None:
        t0 = time.perf_counter()
        prog.compiled_epoch = prog.epoch.lower(*args).compile()
        prog.compile_s += time.perf_counter() - t0
    return prog.compiled_epoch


def run_epoch(prep: Prepared, state: SweepState) -> dict[str, Any]:
    """Train every unit one epoch (in place in `state`); return this epoch's history record.

    The record has one entry per member (by global index) for each metric, ``None`` for members that
    had already stopped, and the list of members still active afterwards.
    """
    n = prep.size
    record: dict[str, Any] = {"epoch": state.epoch + 1, **{m: [None] * n for m in METRICS},
                              "active": [False] * n}
    for u, unit in enumerate(prep.units):
        st = state.units[u]
        was_active = hosts.get(st["active"])
        if not (was_active & unit.real).any():
            continue
        hp, stream = prep.inputs[u]
        dd = prep.data[prep.groups[unit.group].static["dataset"]]
        args = (st, hp, stream, dd.pool, jnp.int32(state.epoch))
        st, metrics = _compiled_epoch(prep, unit, args)(*args)
        state.units[u] = st
        metrics, now_active = hosts.get((metrics, st["active"]))
        for a, b in zip(*np.nonzero(unit.real)):
            i = int(unit.index[a, b])
            record["active"][i] = bool(now_active[a, b])
            if was_active[a, b]:
                for m in METRICS:
                    record[m][i] = float(metrics[m][a, b])
    state.epoch += 1
    state.history.append(record)
    return record


def all_stopped(prep: Prepared, state: SweepState) -> bool:
    return not any((hosts.get(st["active"]) & u.real).any() for u, st in zip(prep.units, state.units))


def test_metrics(prep: Prepared, state: SweepState) -> dict[int, dict[str, float]]:
    """Test loss and accuracy of every member's final (best, with early stopping) parameters."""
    out = {}
    for u, unit in enumerate(prep.units):
        hp, stream = prep.inputs[u]
        dd = prep.data[prep.groups[unit.group].static["dataset"]]
        metrics = hosts.get(prep.programs[unit.group].test(state.units[u], stream, dd.test))
        for a, b in zip(*np.nonzero(unit.real)):
            out[int(unit.index[a, b])] = {k: float(v[a, b]) for k, v in metrics.items()}
    return out


def member_records(prep: Prepared, state: SweepState) -> list[dict[str, Any]]:
    """One record per member: settings, best epoch, epochs run, early stop, val and test numbers."""
    tests = test_metrics(prep, state)
    fields = {}
    for u, unit in enumerate(prep.units):
        host = hosts.get({k: state.units[u][k] for k in ("best_epoch", "epochs_run", "active")})
        for a, b in zip(*np.nonzero(unit.real)):
            fields[int(unit.index[a, b])] = {k: v[a, b] for k, v in host.items()}
    records = []
    for group in prep.groups:
        for offset, hparams in enumerate(group.member_hparams()):
            i = group.first_index + offset
            f = fields[i]
            epochs_run, best = int(f["epochs_run"]), int(f["best_epoch"])
            used = best if prep.config.patience > 0 else epochs_run
            line = state.history[used - 1] if used >= 1 else None
            records.append({
                "index": i, "hparams": hparams, "best_epoch": best, "epochs_run": epochs_run,
                "stopped_early": bool(epochs_run < prep.config.epochs and not f["active"]),
                "val": {"loss": line["val_loss"][i] if line else None,
                        "accuracy": line["val_accuracy"][i] if line else None},
                "test": tests[i],
            })
    return records


def member_variables(prep: Prepared, state: SweepState) -> list[Any]:
    """Every member's final variables (the best epoch's with early stopping) as numpy trees, by index."""
    out: dict[int, Any] = {}
    for u, unit in enumerate(prep.units):
        setup = prep.programs[unit.group].setup
        host = hosts.get(train.final_variables(setup, state.units[u]))
        for a, b in zip(*np.nonzero(unit.real)):
            out[int(unit.index[a, b])] = jax.tree.map(lambda v: v[a, b], host)
    return [out[i] for i in range(prep.size)]
