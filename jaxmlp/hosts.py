"""Which devices a sweep runs on, and how arrays move between the host and the member mesh — in one
process, or in several that run the same program under ``jax.distributed``.

In one process every function here is the plain JAX call (``jax.devices``, ``jax.device_put``,
``jax.device_get``), so single-process runs are unchanged. In several processes (one per host, or several
on one machine):

- :func:`start` joins the run; it must come before anything that touches a JAX backend (``jax.devices()``,
  a ``device_put``, any computation), because the backend is built once, from the cluster it sees then.
- :func:`devices` is the *global* device list (every process's devices, in process order); the member mesh
  is built from it, so one compiled program spans all processes and each holds its slice of the members.
- :func:`put` builds a global array from a host value that every process holds whole (the dataset, the
  hyperparameter grid, a restored checkpoint): each process fills only its own shards, with no
  communication. ``jax.device_put`` would also work, but on a sharding spanning processes it first checks
  that every process passed equal values (an all-process gather of the whole value, ~0.07 s a call here).
- :func:`get` brings a global array back as a whole numpy array on *every* process (an all-gather), so all
  processes take the same decisions (which members are still training, what a checkpoint holds).
  ``jax.device_get`` refuses an array with shards on other processes.

Every process must call :func:`get`, and run every computation, in the same order: they are collective.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxmlp.errors import UsageError


def start(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
          *, timeout_s: int = 300) -> None:
    """Join a run of several processes (``jax.distributed.initialize``) before any other JAX call.

    `coordinator` is ``HOST:PORT`` of process 0, which serves there; every process passes the same
    `coordinator` and `num_processes` and its own `process_id` in ``0 .. num_processes - 1``. With no
    arguments, jax reads them from a cluster's environment (Slurm, Open MPI, Cloud TPU; not tried here).
    A setting jax refuses at once raises :class:`~jaxmlp.errors.UsageError`. Processes that have not all
    joined within `timeout_s` seconds are aborted by jax itself (SIGABRT, a fatal log line, no Python
    exception). If one stops later, the others stop with an error at their next collective step once a
    timeout expires (seen here: process 0 ended at a usage error before training, and process 1 raised
    a gloo ``DEADLINE_EXCEEDED`` 30 s later). Calling it again is a no-op.
    """
    if jax.distributed.is_initialized():
        return
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=timeout_s)
    except (RuntimeError, ValueError) as e:
        if "before any JAX calls" in str(e):   # a bug in the caller, not a problem of the cluster
            raise
        # What raises here is a setting jax cannot use (an address it cannot serve on, no cluster in
        # the environment). Peers that never answer do not raise: jax aborts the process after the timeout.
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        if coordinator is None and num_processes is None and process_id is None:
            raise UsageError(f"no cluster found to join ({reason}); give the coordinator address, the "
                             "number of processes and this process's id") from None
        raise UsageError(f"cannot join the run as process {process_id} of {num_processes} at {coordinator} "
                         f"({reason}); start every process with the same --coordinator and "
                         "--num-processes and its own --process-id") from None


def devices() -> list[jax.Device]:
    """Every device of the run, across all processes (in one process: its devices)."""
    return jax.devices()


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    """True in process 0, the one that writes the run directory and prints (and in a single process)."""
    return jax.process_index() == 0


def put(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """`tree`'s leaves (numpy, Python scalars or single-process jax arrays, equal in every process) as
    arrays laid out by `sharding`, which may span processes."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda leaf: _put_global(leaf, sharding), tree)


def get(tree: Any) -> Any:
    """`tree`'s arrays as numpy arrays, whole, in every process (an all-gather where they are spread)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    leaves, treedef = jax.tree.flatten(tree)
    # Only arrays with shards on other processes are gathered; the rest are local already.
    spread = {i for i, leaf in enumerate(leaves) if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable}
    out = list(jax.device_get([None if i in spread else leaf for i, leaf in enumerate(leaves)]))
    named = sorted(i for i in spread if isinstance(leaves[i].sharding, NamedSharding))
    if named:
        # One compiled copy onto every device for all of them (process_allgather compiles and runs one
        # program per array): then each process reads its first local copy.
        whole = jax.jit(_identity, out_shardings=tuple(NamedSharding(leaves[i].sharding.mesh, P())
                                                       for i in named))(tuple(leaves[i] for i in named))
        for i, value in zip(named, whole):
            out[i] = np.asarray(value.addressable_data(0))
    for i in sorted(spread - set(named)):
        out[i] = np.asarray(multihost_utils.process_allgather(leaves[i], tiled=True))
    return jax.tree.unflatten(treedef, out)


def barrier(name: str) -> None:
    """Wait until every process gets here (after process 0 alone changed shared files, for instance)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"jaxmlp:{name}")


def _identity(x: Any) -> Any:
    return x


def _put_global(leaf: Any, sharding: jax.sharding.Sharding) -> jax.Array:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return jax.device_put(leaf, sharding)   # already global: a reshard on the devices
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        # Typed random keys: move their raw bits, then view them as keys again (on the devices).
        data = _put_global(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    host = np.asarray(leaf)
    # Each process's devices take their slices of the host copy: nothing crosses between processes.
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
