"""Command-line glue of successive halving and Hyperband (:mod:`jaxmlp.search.halving`).

``jaxmlp sweep ... --halving 3 [--min-epochs 1]`` puts a :class:`~jaxmlp.search.halving.SuccessiveHalving`
schedule on an ordinary sweep (a grid, or ``--sample N`` points); ``jaxmlp hyperband --eta 3 --min-epochs 1
--epochs 27 --lr 1e-4:1e-1 ... --out runs/hb`` runs Hyperband over the ranges given to hyperparameter flags
(the compact specs of ``--sample``). :mod:`jaxmlp.cli` adds these flags and calls these functions.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any, Callable

from jaxmlp.errors import UsageError


def add_halving_flags(p: argparse.ArgumentParser) -> None:
    """``--halving ETA`` and ``--min-epochs N`` for ``jaxmlp sweep``."""
    p.add_argument("--halving", type=int, metavar="ETA",
                   help="successive halving: after epochs N, N·ETA, N·ETA², ... (N: --min-epochs) keep the best "
                        "1/ETA of the points still training by validation accuracy (mean over seeds) and stop "
                        "the rest (results.json: pruned, with the rung)")
    p.add_argument("--min-epochs", type=int, default=None, metavar="N",
                   help="epochs before the first rung of --halving or --asha (default 1)")
    p.add_argument("--asha", type=int, metavar="SLOTS",
                   help="asynchronous successive halving: SLOTS members train at once, the others wait and take "
                        "the places stops free; rungs as --halving (ETA from --halving, default 3); "
                        "a member stops at --epochs of its own or when the sweep's epochs run out")


def halving_callbacks(args: argparse.Namespace) -> list[Any]:
    """The schedule ``--halving`` or ``--asha`` asks for (none without), checked against ``--epochs``; call it before
    anything is written, so bad values end as one-line usage errors."""
    eta = getattr(args, "halving", None)
    min_epochs = getattr(args, "min_epochs", None)
    slots = getattr(args, "asha", None)
    if slots is not None:
        from jaxmlp.search.asha import ASHA
        from jaxmlp.search.halving import check

        eta, min_epochs = eta or 3, 1 if min_epochs is None else min_epochs
        check(eta, min_epochs, args.epochs, flags=("--halving", "--min-epochs"), epochs_flag="--epochs")
        return [ASHA(slots, eta, min_epochs)]
    if eta is None:
        if min_epochs is not None:
            raise UsageError("--min-epochs sets the first rung of --halving; add --halving ETA (e.g. 3) or drop it")
        return []
    from jaxmlp.search.halving import SuccessiveHalving, check

    min_epochs = 1 if min_epochs is None else min_epochs
    check(eta, min_epochs, args.epochs, flags=("--halving", "--min-epochs"), epochs_flag="--epochs")
    return [SuccessiveHalving(eta, min_epochs)]


def add_hyperband_parser(sub: Any, add_run_flags: Callable[[argparse.ArgumentParser, bool], None]) -> None:
    """The ``hyperband`` subcommand: the sweep's flags (hyperparameter flags take ranges, as under
    ``--sample``), with ``--epochs`` the most epochs a point trains, plus ``--eta`` and ``--min-epochs``."""
    p = sub.add_parser("hyperband", help="Hyperband: brackets of successive halving over sampled points "
                                         "(hyperparameter flags give ranges low:high, as under --sample)")
    add_run_flags(p, True)
    p.add_argument("--eta", type=int, default=3, help="keep 1/ETA of the points at each rung (default 3)")
    p.add_argument("--min-epochs", type=int, default=1, metavar="N",
                   help="epochs before the first rung of the most aggressive bracket (default 1); --epochs is "
                        "the most any point trains")


def run_hyperband(args: argparse.Namespace) -> int:
    """``jaxmlp hyperband``: check the flags, run :func:`jaxmlp.search.halving.hyperband`, print a summary."""
    from jaxmlp.cli import config_from_args
    from jaxmlp.hparams import TABLE
    from jaxmlp.processes import join_processes, processes_from_args
    from jaxmlp.search.halving import brackets
    from jaxmlp.search.points import is_spec

    if args.sample is not None:
        raise UsageError("hyperband draws its own points (how many each bracket needs); drop --sample")
    plan = brackets(args.epochs, args.eta, args.min_epochs)
    given = {h.name: text for h in TABLE.values() if (text := getattr(args, f"hp_{h.name}")) is not None}
    space = {n: t for n, t in given.items() if is_spec(t)}
    if not space:
        raise UsageError("hyperband needs at least one range to draw points from, e.g. --lr 1e-4:1e-1 "
                         "(a list a,b,c is a grid, crossed with the points)")
    # The rest of the flags make an ordinary sweep's config (lists stay a grid crossed with the points).
    rest = argparse.Namespace(**vars(args))
    rest.command = "sweep"
    for n in space:
        setattr(rest, f"hp_{n}", None)
    config = config_from_args(rest)
    from jaxmlp.search.points import sample

    sample(space, 1, args.sampler, args.sample_seed)   # the specs fail here, before anything is written
    processes = processes_from_args(args)
    out = Path(args.out or "runs/hyperband")
    if args.checkpoint_every < 1 or args.keep < 1:
        raise UsageError("--checkpoint-every and --keep must be at least 1")
    if args.no_checkpoint and args.checkpoint_dir:
        raise UsageError("--no-checkpoint and --checkpoint-dir contradict each other; drop one of the two")
    join_processes(processes)
    from jaxmlp import checkpoint, hosts
    from jaxmlp.search.halving import hyperband

    ckpt = None if args.no_checkpoint else (Path(args.checkpoint_dir) if args.checkpoint_dir else checkpoint.DEFAULT)
    hb = hyperband(config, space, eta=args.eta, min_epochs=args.min_epochs, max_epochs=args.epochs, out=out,
                   seed=args.sample_seed, method=args.sampler, progress=not args.quiet, checkpoint_dir=ckpt,
                   resume=args.resume, new_run=args.new_run, replace=args.replace,
                   checkpoint_every=args.checkpoint_every, keep=args.keep, plots=not args.no_plots,
                   name=out.name, command=shlex.join(["jaxmlp", *args.argv]), callbacks=args.callbacks)
    if hosts.is_primary():
        s = hb.summary
        best = s["best"]
        line = (f"hyperband: {len(plan)} bracket(s), {sum(b.points for b in plan)} points, {s['member_epochs']:,} "
                f"member-epochs ({s['member_epochs'] / s['member_epochs_full']:.0%} of training all to --epochs); ")
        if best is None:
            line += "every member diverged; "
        else:
            settings = ", ".join(f"{k}={v:g}" for k, v in best["hparams"].items() if k in space)
            line += (f"best validation accuracy {best['val']['accuracy']:.4f} (bracket {best['bracket']}, member "
                     f"{best['index']}: {settings}; test accuracy {best['test']['accuracy']:.4f}); ")
        print(line + f"results in {out}/")
    return 0
