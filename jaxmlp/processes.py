"""The three flags of a run in several processes (``--coordinator``, ``--num-processes``, ``--process-id``)
and joining ``jax.distributed`` with them: shared by the ``jaxmlp`` command and the reference studies.
Imports no jax at module level (the flags are read before jax starts)."""

from __future__ import annotations

import argparse
import os
import sys

from jaxmlp.errors import UsageError


def add_process_flags(p: argparse.ArgumentParser) -> None:
    """``--coordinator``, ``--num-processes``, ``--process-id`` (read back by :func:`processes_from_args`)."""
    several = p.add_argument_group(
        "several processes", "run the same command in every process (one per host) under jax.distributed, "
        "with all three flags; process 0 writes --out, every process trains its share of the members")
    several.add_argument("--coordinator", metavar="HOST:PORT", help="address where process 0 serves the others")
    several.add_argument("--num-processes", type=int, metavar="N", help="how many processes run the sweep")
    several.add_argument("--process-id", type=int, metavar="I", help="this process's number, 0 to N-1")


def processes_from_args(args: argparse.Namespace) -> tuple[str, int, int] | None:
    """(coordinator, num_processes, process_id) from the three flags, or None without them (one process)."""
    given = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
             "--process-id": args.process_id}
    missing = [flag for flag, value in given.items() if value is None]
    if len(missing) == len(given):
        return None
    if missing:
        raise UsageError(f"{' and '.join(missing)} missing: --coordinator, --num-processes and --process-id "
                         "go together (all three for a run of several processes, none for one)")
    host, colon, port = args.coordinator.rpartition(":")
    if not (colon and host and port.isdigit() and 1 <= int(port) <= 65535):
        raise UsageError(f"--coordinator {args.coordinator!r} is not HOST:PORT (for example 10.0.0.1:8476)")
    if args.num_processes < 1:
        raise UsageError(f"--num-processes must be at least 1, got {args.num_processes}")
    if not 0 <= args.process_id < args.num_processes:
        raise UsageError(f"--process-id {args.process_id} is outside 0..{args.num_processes - 1} "
                         f"(--num-processes {args.num_processes})")
    return args.coordinator, args.num_processes, args.process_id


def join_processes(processes: tuple[str, int, int] | None) -> None:
    """Join ``jax.distributed`` as one of `processes` (from :func:`processes_from_args`); nothing for None.
    Call it before anything touches a device: jax builds its backend once."""
    if processes is None:
        return
    from jaxmlp import hosts

    _python_only_stdout()
    hosts.start(*processes)


def _python_only_stdout() -> None:
    """Send what native libraries write to standard output to /dev/null, keeping ``sys.stdout`` (a copy of
    the descriptor) for jaxmlp's own lines: gloo, behind jax's CPU collectives, prints a "[Gloo] Rank i is
    connected to n peer ranks" line there in every process, which would break "the other processes print
    nothing but errors" (stderr is left alone)."""
    sys.stdout.flush()
    kept = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = os.fdopen(kept, "w", buffering=1, encoding=sys.stdout.encoding, errors=sys.stdout.errors)
