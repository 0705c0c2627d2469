"""One XLA host device per CPU core, set before jax is imported (imports nothing heavy itself).

Sharding the member axis over per-core CPU devices beat one device using both cores' threads here (see
benchmarks/results). The setting only shapes the CPU platform: on a GPU or TPU jax trains on those
devices and ignores it.
"""

from __future__ import annotations

import os
import sys


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_one_device_per_core() -> int | None:
    """Set ``XLA_FLAGS`` for one host device per usable core, unless the user set a count or jax is
    already imported (then it is too late). Returns the count set, or None."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or "jax" in sys.modules:
        return None
    cores = usable_cores()
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cores}".strip()
    return cores


def single_device_note() -> str | None:
    """A line to show when jax was imported before jaxmlp could ask for one CPU device per core: the
    sweep then runs on one device (unsharded), which costs speed on large sweeps. None otherwise."""
    import jax

    cores = usable_cores()
    if jax.default_backend() != "cpu" or cores < 2 or len(jax.devices()) > 1:
        return None
    return (f"jax started before jaxmlp with 1 CPU device for {cores} cores, so members are not sharded "
            f"(large sweeps ran ~1.3x slower so here); import jaxmlp before jax, or set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={cores}")
