"""``python -m experiments``: list the reference studies, run one, or run them all.

    python -m experiments                      # the list
    python -m experiments dropout_sweep        # one study, full settings, into runs/dropout_sweep/
    python -m experiments cnn --quick --out /tmp/cnn
    python -m experiments --all --quick        # every study quickly (CI)

Bad flags end with one line on stderr and exit code 2, as in the ``jaxmlp`` command.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from experiments import common, report
from jaxmlp.processes import join_processes, processes_from_args
from jaxmlp.hostdevices import use_one_device_per_core
from jaxmlp.errors import UsageError


def listing() -> str:
    """The studies, one line each, and how to run them."""
    lines = ["Reference studies (python -m experiments NAME [--quick] [--out DIR] [--dataset NAME] "
             "[--data-dir DIR]):"]
    width = max(map(len, common.STUDIES))
    for name in common.STUDIES:
        lines.append(f"  {name.ljust(width)}  {common.load_module(name).ABOUT}")
    lines.append("Every study quickly: python -m experiments --all --quick")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments`` (and of ``jaxmlp experiment``); returns the exit code."""
    use_one_device_per_core()
    try:
        args = common.build_parser().parse_args(argv)
        if args.all and args.name:
            raise UsageError(f"give a study name or --all, not both (got {args.name!r} and --all)")
        if not args.all and not args.name:
            print(listing())
            return 0
        names = common.STUDIES if args.all else [args.name]
        for name in names:
            common.load_module(name)   # an unknown name fails before anything runs
        processes = processes_from_args(args)
        common.options_from_args(args, None)   # bad values too
        join_processes(processes)
        times = []
        for name in names:
            if args.all:
                out = Path(args.out) / name if args.out else None
            else:
                out = Path(args.out) if args.out else None
            t0 = time.perf_counter()
            common.run_study(name, common.options_from_args(args, out))
            times.append((name, time.perf_counter() - t0))
        if len(times) > 1 and common.is_primary():
            print(report.plain_table(["study", "wall (s)"], [[n, f"{t:.1f}"] for n, t in times],
                                     f"{len(times)} studies in {sum(t for _, t in times):.1f} s"))
        return 0
    except UsageError as e:
        print(f"{common.PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{common.PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
