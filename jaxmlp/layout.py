"""Devices, mesh, chunks and padding: how a sweep's members are laid out, decided once per sweep.

A group's members form a grid of S streams (seed × fold) by H hyperparameter points. A *unit* (a chunk of
the group) holds a block of it with shape (s, h): every state leaf has leading axes (s, h). Units bound
memory (``chunk_size`` members each, padded to one shape so they share one compiled program). Each
unit's members are sharded over the run's devices on a 1-D mesh named ``members``: along the stream axis
when it divides evenly, otherwise along the (padded) hyperparameter axis. Padding members repeat the last
real one and are dropped from every result.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmlp import hosts
from jaxmlp.config import Group, SweepConfig, ceil_to
from jaxmlp.errors import UsageError


def sweep_devices(config: SweepConfig) -> list[jax.Device]:
    """The devices a sweep's members are sharded over, taken from :func:`jaxmlp.hosts.devices` (in one
    process its own devices, under ``jax.distributed`` every process's).

    ``config.devices`` of them, or by default all, unless some group has fewer members than devices
    (padding would then cost more than the devices give: a single run trains on one device, with all its
    threads). With several processes each one keeps the same number of its own devices, so that every
    process holds a share of each unit: then ``config.devices`` must be a multiple of the process count,
    and the small-group default is one device per process.
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


@dataclass
class Layout:
    """The devices and the member mesh of a sweep (fixed for its life)."""

    devices: list[jax.Device]
    mesh: Mesh

    @classmethod
    def of(cls, config: SweepConfig) -> "Layout":
        devices = sweep_devices(config)
        # Auto axis types: with Explicit ones (jax.make_mesh's default) vmap(tx.init) over a sharded tree fails.
        return cls(devices, Mesh(np.array(devices), ("members",), axis_types=(jax.sharding.AxisType.Auto,)))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def members(self, unit: "Unit") -> NamedSharding:
        """The sharding of a unit's (s, h, ...) member arrays."""
        return NamedSharding(self.mesh, P("members") if unit.shard_axis == 0 else P(None, "members"))

    def streams(self, unit: "Unit") -> NamedSharding:
        """The sharding of a unit's (s, ...) stream arrays."""
        return NamedSharding(self.mesh, P("members") if unit.shard_axis == 0 else P())

    def describe(self, n_members: int, n_groups: int, n_units: int) -> str:
        """One line saying how the sweep is laid out: members, groups, chunks, devices."""
        kinds = sorted({d.device_kind for d in self.devices})
        processes = hosts.process_count()
        return (f"{n_members} member(s) in {n_groups} group(s), {n_units} chunk(s); "
                f"sharded over {len(self.devices)} {'/'.join(kinds)} device(s)"
                + ("" if len(self.devices) > 1 else " (one device)")
                + (f" in {processes} processes" if processes > 1 else ""))


@dataclass
class Unit:
    """A chunk of a group: stream and point positions (padded), the grid shape, and its sharding.

    Row ``a`` holds stream ``streams[a]``; its column ``b`` the group's point ``points[a, b]``. A planned unit
    has the same points on every row (a block of the group's grid); a repacked one (:func:`pack`) gives each
    row its own, so that only members still training share a compiled batch.
    """

    group: int
    streams: list[int]              # positions in group.streams, length s (padded)
    points: np.ndarray              # int (s, h): positions in group.hparams (padding repeats a real member)
    real: np.ndarray                # bool (s, h): False for padding
    index: np.ndarray               # int (s, h): global member index (-1 for padding)
    shard_axis: int                 # 0: streams sharded over devices, 1: points

    @property
    def shape(self) -> tuple[int, int]:
        return self.points.shape

    def members(self) -> list[tuple[int, int, int]]:
        """(row, column, global member index) of each real member: the one loop over a unit's members."""
        return [(int(a), int(b), int(self.index[a, b])) for a, b in zip(*np.nonzero(self.real))]

    def without(self, moved: set[int]) -> "Unit":
        """This unit with members `moved` (global indices) no longer its own (they became padding here)."""
        real = self.real & ~np.isin(self.index, list(moved))
        return dataclasses.replace(self, real=real, index=np.where(real, self.index, -1))

    def to_dict(self) -> dict:
        """JSON-ready (checkpoints record the layout a sweep trains in, so that a resume uses the same)."""
        return {"group": self.group, "streams": list(self.streams), "points": self.points.tolist(),
                "real": self.real.tolist(), "index": self.index.tolist(), "shard_axis": self.shard_axis}

    @classmethod
    def from_dict(cls, d: dict) -> "Unit":
        return cls(int(d["group"]), [int(s) for s in d["streams"]], np.array(d["points"], np.int64),
                   np.array(d["real"], bool), np.array(d["index"], np.int64), int(d["shard_axis"]))


def memory_budget() -> int:
    """Bytes a sweep may use: half of the first device's memory (or of the host's RAM on CPU)."""
    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 2
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def plan(config: SweepConfig, group_id: int, group: Group, member_bytes: int, n_devices: int) -> list[Unit]:
    """Split a group into units of at most ``chunk_size`` members, padded for the device count.
    `member_bytes`: what one member needs while training (from the model: see program.member_bytes)."""
    S, H = len(group.streams), len(group.hparams)
    fit = memory_budget() // member_bytes
    if fit < 1:
        raise UsageError(f"one member of group {group.name()} needs about {member_bytes / 2**30:.1f} GiB, more "
                         f"than the {memory_budget() / 2**30:.1f} GiB a sweep may use here: none fits; use a "
                         "smaller model or batch size")
    chunk = config.chunk_size or fit
    if chunk > fit:
        raise UsageError(f"--chunk-size {chunk} needs about {chunk * member_bytes / 2**30:.1f} GiB; "
                         f"about {fit} members fit in memory here: use --chunk-size {fit} or leave it out")
    if chunk >= S * H:
        s, h = S, H
    elif chunk >= H:
        s, h = chunk // H, H
    else:
        s, h = 1, chunk
    shard_axis = 0 if s % n_devices == 0 else 1
    h_pad = h if shard_axis == 0 else ceil_to(h, n_devices)
    units = []
    for s0 in range(0, S, s):
        for h0 in range(0, H, h):
            streams = [min(i, S - 1) for i in range(s0, s0 + s)]
            hps = [min(i, H - 1) for i in range(h0, h0 + h_pad)]
            real = np.array([[s0 + a < S and h0 + b < H and b < h for b in range(h_pad)] for a in range(s)])
            index = np.array([[group.first_index + st * H + hp for hp in hps] for st in streams])
            points = np.array([hps for _ in streams], np.int64).reshape(len(streams), len(hps))
            units.append(Unit(group_id, streams, points, real, np.where(real, index, -1), shard_axis))
    return units


def bucket(n: int) -> int:
    """The batch size `n` members are packed into: n itself up to 8, then the next multiple of an eighth
    of the power of two above n (9 -> 10, 27 -> 28, 33 -> 40, 100 -> 112). A sweep whose members stop a
    few at a time thus compiles its epoch for at most four sizes per doubling, and padding wastes at most
    an eighth (powers of two alone waste up to half: 9 survivors of a halving rung would train as 16;
    measured on the 81-point halving benchmark, 1.5·2^k steps still cost 2 points of wall time)."""
    if n <= 8:
        return max(1, n)
    step = (1 << (n - 1).bit_length()) // 8
    return -(-n // step) * step


def pack(group_id: int, members: list[tuple[int, int, int]], chunk: int, n_devices: int) -> list[Unit]:
    """Units holding exactly `members` ((stream, point, global index) of one group), for training them
    without the others: a row per stream (its members share the minibatch gather and dropout draws), rows
    padded to one bucketed width (:func:`bucket`) by repeating their last member, at most `chunk` members
    per unit (whole rows where they fit). The result depends on the members alone, not on the units they
    came from, so a resumed sweep repacks as an uninterrupted one did."""
    rows: dict[int, list[tuple[int, int]]] = {}
    for stream, point, index in sorted(members, key=lambda m: (m[0], m[2])):
        rows.setdefault(stream, []).append((point, index))
    h = bucket(max(len(r) for r in rows.values()))
    if h > chunk:   # a row wider than a unit: split it into pieces of the chunk's width
        h = max(1, chunk)
        rows = {(s, k): r[k:k + h] for s, r in rows.items() for k in range(0, len(r), h)}
    per_unit = max(1, chunk // h)
    keys = list(rows)
    units = []
    for k0 in range(0, len(keys), per_unit):
        block = keys[k0:k0 + per_unit]
        s = len(block)
        shard_axis = 0 if s % n_devices == 0 else 1
        width = h if shard_axis == 0 else ceil_to(h, n_devices)
        points = np.zeros((s, width), np.int64)
        index = np.full((s, width), -1, np.int64)
        real = np.zeros((s, width), bool)
        for a, key in enumerate(block):
            row = rows[key]
            for b in range(width):
                point, i = row[min(b, len(row) - 1)]
                points[a, b], real[a, b] = point, b < len(row)
                index[a, b] = i if b < len(row) else -1
        streams = [key[0] if isinstance(key, tuple) else key for key in block]
        units.append(Unit(group_id, streams, points, real, index, shard_axis))
    return units
