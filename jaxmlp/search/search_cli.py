"""``jaxmlp search``: Optuna drives a sweep from the command line (:func:`jaxmlp.search.optuna_search`).

    jaxmlp search --trials 64 --batch 16 --sampler tpe --pruner halving --lr 1e-4:1e-1 --dropout 0:0.6 \\
        --l2 1e-6:1e-2 --hidden 8,16 --epochs 3 --out runs/search

A hyperparameter flag given a range (``low:high``, ``low:high:log``, ``low:high:int``, ``choice:a,b,c``:
see :mod:`jaxmlp.search.points`) is searched; given one value, it is fixed. Every other setting takes one
value (a search trains one kind of model). Rerunning the same command resumes a killed search. Hooked into
``jaxmlp`` by :func:`add_parser` and :func:`run`; imports neither jax nor optuna until it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jaxmlp import cli_flags, hparams
from jaxmlp.errors import UsageError

SAMPLERS = ("tpe", "cmaes", "gp", "qmc", "random")          # as jaxmlp.search.optuna_setup (no numpy import here)
PRUNERS = ("none", "median", "halving", "hyperband")
REPACK = {"auto": "auto", "always": True, "never": False}
HELP = "Optuna drives a sweep: batches of trials trained as one vmapped job, pruned by epoch, resumable"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``search`` subcommand to `subparsers` (``argparse``'s ``add_subparsers()``)."""
    p = subparsers.add_parser("search", help=HELP, description=HELP + ".")
    add_flags(p)
    return p


def add_flags(p: argparse.ArgumentParser) -> None:
    """The flags of ``jaxmlp search`` (dests as ``jaxmlp train``'s, so that its config builder reads them)."""
    s = p.add_argument_group("search")
    s.add_argument("--trials", type=int, default=64, help="trials in all (default 64)")
    s.add_argument("--batch", type=int, default=16,
                   help="trials asked and trained at once, as one vmapped job (default 16); the last batch "
                        "holds the rest")
    s.add_argument("--sampler", default="tpe", choices=SAMPLERS,
                   help="tpe (default; multivariate, constant liar), cmaes (population = --batch), gp (needs "
                        "torch), qmc (Sobol) or random")
    s.add_argument("--pruner", default="none", choices=PRUNERS,
                   help="none (default), median, halving (successive halving from epoch 1) or hyperband; "
                        "pruned trials stop training at once")
    s.add_argument("--search-seed", type=int, default=0, help="seed of the sampler (default 0)")
    s.add_argument("--metric", default="val_accuracy", choices=("val_accuracy", "val_loss"),
                   help="what the trials are told: val_accuracy (maximised, default) or val_loss (minimised)")
    s.add_argument("--repack", default="auto", choices=REPACK,
                   help="pruned members leave the compiled batch: auto (default: when the training saved "
                        "outweighs compiling a smaller batch), always or never (kept in it, masked)")
    s.add_argument("--out", default="runs/search", help="run directory (default runs/search); the same --out resumes")
    s.add_argument("--checkpoint-interval", type=float, default=30.0, metavar="SECONDS",
                   help="a batch saves its state after an epoch once this long has passed since its start or "
                        "previous save (default 30; 0: every epoch): a killed search trains again up to this "
                        "long, and ends with the same trials and values")
    s.add_argument("--no-plots", action="store_true", help="skip Optuna's figures at the end")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    m = p.add_argument_group("the model and its training (one value each)")
    cli_flags.add_model_flags(m, sweep=False)
    m.add_argument("--seed", default="0", help="training seed of every trial: initialisation, minibatch order, dropout")
    cli_flags.add_training_flags(m, processes=False)
    h = p.add_argument_group("hyperparameters: a range to search (low:high[:log|:lin], low:high:int[:log], "
                             "choice:a,b,c) or one value to fix")
    for row in hparams.TABLE.values():
        h.add_argument(row.flag, dest=f"hp_{row.name}", metavar="SPEC",
                       help=f"{row.help} (default {row.default:g}, in {row.interval})")


def space_and_config(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The searched space and the :class:`~jaxmlp.config.SweepConfig` of the flags."""
    from jaxmlp.cli import config_from_args
    from jaxmlp.config import parse_values
    from jaxmlp.search.points import is_spec, parse_spec

    for name, flag in (("dataset", "dataset"), ("model", "model"), ("activation", "activation"),
                       ("batch_norm", "batch-norm"), ("optimizer", "optimizer"), ("batch_size", "batch-size"),
                       ("seed", "seed"), ("hidden", "hidden")):
        text = getattr(args, name)
        if ("/" if name == "hidden" else ",") in text or (name == "seed" and ":" in text):
            raise UsageError(f"--{flag} {text!r}: a search trains one kind of model; give one value")
    space = {}
    for row in hparams.TABLE.values():
        text = getattr(args, f"hp_{row.name}")
        if text is None:
            continue
        if is_spec(text):
            space[row.name] = parse_spec(text, row.name)
            setattr(args, f"hp_{row.name}", None)
        elif len(parse_values(text, row.name)) != 1:
            raise UsageError(f"{row.flag} {text!r}: give a range to search (low:high, low:high:log, choice:a,b,c) "
                             "or one value to fix")
    if not space:
        raise UsageError("nothing to search: give a range to at least one hyperparameter, e.g. --lr 1e-4:1e-1")
    args.command = "search"   # config_from_args: one value per setting
    return space, config_from_args(args)


def run(args: argparse.Namespace) -> int:
    """Run ``jaxmlp search`` from parsed flags; bad input raises :class:`UsageError` (exit 2)."""
    from jaxmlp.search.optuna_setup import require_optuna

    require_optuna()
    space, config = space_and_config(args)
    from jaxmlp.search import optuna_search

    out = Path(args.out)
    res = optuna_search(config, space, args.trials, batch=args.batch, out=out, sampler=args.sampler,
                        pruner=args.pruner, seed=args.search_seed, metric=args.metric, progress=not args.quiet,
                        plots=not args.no_plots, repack=REPACK[args.repack],
                        callbacks=getattr(args, "callbacks", ()), checkpoint_interval_s=args.checkpoint_interval)
    states = [t["state"] for t in res.trials]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL") if s in states)
    if res.best_trial is None:
        print(f"{len(states)} trials ({counts}), none complete; results in {out}/")
        return 0
    params = ", ".join(f"{k} {v:.4g}" for k, v in res.best_params.items())
    print(f"{len(states)} trials ({counts}) in {res.timing['wall_s']:.1f} s; best {args.metric} {res.best_value:.4f} "
          f"(trial {res.best_trial}: {params}); results in {out}/")
    for note in res.notes:
        print(f"note: {note}")
    return 0
