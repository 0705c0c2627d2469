"""One XLA host device per CPU core, set before jax is imported (imports nothing heavy itself).

Sharding the member axis over per-core CPU devices beat one device using both cores' threads here (see
benchmarks/results). The setting only shapes the CPU platform: on a GPU or TPU jax trains on those
devices and ignores it.
"""

from __future__ import annotations

import os
import sys


def use_one_device_per_core() -> int | None:
    """Set ``XLA_FLAGS`` for one host device per usable core, unless the user set a count or jax is
    already imported (then it is too late). Returns the count set, or None."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or "jax" in sys.modules:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cores}".strip()
    return cores
