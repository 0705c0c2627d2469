"""The ``jaxmlp`` command: ``train``, ``sweep``, ``hyperband``, ``search``, ``plot``, ``evaluate``, ``compare``.

Bad input ends with one line on stderr and exit code 2, before anything is written. jax is imported only
after the arguments are parsed, so that host-device settings (XLA_FLAGS) can still take effect, and a run
of several processes (``--coordinator``, ``--num-processes``, ``--process-id``) joins ``jax.distributed``
before anything touches a device.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from jaxmlp import cli_flags, hparams
from jaxmlp.errors import UsageError
from jaxmlp.processes import add_process_flags, join_processes, processes_from_args
from jaxmlp.hostdevices import use_one_device_per_core
from jaxmlp.search import halving_cli, search_cli

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; we want one line
        raise UsageError(f"{message}; see '{self.prog} --help'")


def _add_run_flags(p: argparse.ArgumentParser, sweep: bool) -> None:
    many = " (a list a,b,c, a range start:stop:num, or start:stop:num:log)" if sweep else ""
    cli_flags.add_model_flags(p, sweep)
    for h in hparams.TABLE.values():   # one flag per row of the hyperparameter table
        p.add_argument(h.flag, dest=f"hp_{h.name}", metavar="VALUES" if sweep else "VALUE",
                       help=f"{h.help} (default {h.default:g}, in {h.interval})" + many)
    p.add_argument("--seed", default="0", help="random seed: initialisation, minibatch order, dropout" + many)
    if sweep:
        p.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1 (shorthand for --seed 0:N-1:N)")
        p.add_argument("--sample", type=int, metavar="N",
                       help="N points drawn over the ranges given to hyperparameter flags, instead of a grid; "
                            "one N-member job. A flag gives low:high (log axis as the table says; low:high:log "
                            "or low:high:lin to choose), integers low:high:int[:log], or choice:a,b,c (each "
                            "equally likely); a list a,b,c is still a grid, crossed with the points")
        p.add_argument("--sampler", default="random", choices=("random", "sobol", "halton"),
                       help="how --sample draws its points (default random; sobol/halton: quasi-random)")
        p.add_argument("--sample-seed", type=int, default=0, help="seed of the --sample draws (default 0)")
        p.add_argument("--folds", type=int, default=0, help="K-fold cross-validation as one more axis")
    cli_flags.add_training_flags(p, processes=True)
    p.add_argument("--out", help="run directory (default: runs/<command>)")
    p.add_argument("--checkpoint-dir", help="checkpoint folder (default: <out>/checkpoints)")
    p.add_argument("--checkpoint-every", type=int, default=1, help="save every N epochs (default 1)")
    p.add_argument("--keep", type=int, default=2, help="checkpoints to keep (default 2)")
    p.add_argument("--no-checkpoint", action="store_true", help="do not save checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--new-run", action="store_true",
                   help="start over: discard jaxmlp's checkpoints in the checkpoint folder (nothing else)")
    p.add_argument("--replace", action="store_true",
                   help="replace another sweep's run in --out: its results, plots and checkpoints")
    p.add_argument("--no-plots", action="store_true", help="skip the figures at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_process_flags(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxmlp", description="Train sweeps of small image classifiers as one vmapped JAX job.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_flags(sub.add_parser("train", help="train one model (a sweep of one member)"), sweep=False)
    p = sub.add_parser("sweep", help="train every member of a hyperparameter grid at once")
    _add_run_flags(p, sweep=True)
    halving_cli.add_halving_flags(p)
    halving_cli.add_hyperband_parser(sub, _add_run_flags)
    search_cli.add_parser(sub)
    p = sub.add_parser("plot", help="redraw a run's figures from its results files")
    p.add_argument("run_dir")
    p = sub.add_parser("evaluate", help="test accuracy of one trained member, from its checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--member", type=int, default=0)
    p.add_argument("--checkpoint-dir")
    p = sub.add_parser("compare", help="which values of a setting differ: paired over seeds, Holm-corrected")
    p.add_argument("run_dir")
    p.add_argument("--by", default="dropout", help="the setting to compare the values of (default dropout)")
    p.add_argument("--baseline", help="compare with this value instead of the best")
    p.add_argument("--metric", default="accuracy", choices=("accuracy", "loss"))
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--power", type=float, metavar="DIFF",
                   help="also say how many seeds detect a difference of DIFF (points of accuracy, or nats)")
    # Listed for --help only: main() hands everything after "experiment" to the experiments package.
    sub.add_parser("experiment", help="run a reference study: jaxmlp experiment NAME [--quick] [--out DIR] "
                                      "(no NAME: list them; same as python -m experiments)")
    return parser


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--{flag} {text!r} is not an integer") from None


def config_from_args(args: argparse.Namespace):
    """Turn parsed flags into a validated :class:`~jaxmlp.config.SweepConfig`."""
    from jaxmlp.config import SweepConfig, parse_hidden, parse_values

    sweep = args.command == "sweep"

    def one_or_many(name: str, text: str, values: list) -> list:
        if not sweep and len(values) != 1:
            raise UsageError(f"--{name.replace('_', '-')} {text!r} gives {len(values)} values; "
                             "'jaxmlp train' takes one: use 'jaxmlp sweep' for several")
        return values

    given = {h.name: text for h in hparams.TABLE.values() if (text := getattr(args, f"hp_{h.name}")) is not None}
    points = None
    if getattr(args, "sample", None) is not None:
        from jaxmlp.search.points import is_spec, sample

        space = {n: t for n, t in given.items() if is_spec(t)}   # sample() parses the compact specs
        points = sample(space, args.sample, args.sampler, args.sample_seed)
        given = {n: t for n, t in given.items() if n not in space}
    swept = {n: one_or_many(n, text, parse_values(text, n)) for n, text in given.items()}
    seeds = one_or_many("seed", args.seed, parse_values(args.seed, "seed", int))
    if getattr(args, "seeds", None) is not None:
        if args.seed != "0":
            raise UsageError("--seeds and --seed both given; give one of them")
        if not 1 <= args.seeds <= 10_000:
            raise UsageError(f"--seeds must lie in 1..10000, got {args.seeds}")
        seeds = list(range(args.seeds))

    def listed(text: str, flag: str) -> list[str]:
        values = [v.strip() for v in text.split(",")]
        if not sweep and len(values) != 1:
            raise UsageError(f"--{flag} {text!r} gives several values; 'jaxmlp train' takes one: "
                             "use 'jaxmlp sweep'")
        return values

    hidden = [parse_hidden(h) for h in (args.hidden.split("/") if sweep else [args.hidden])]
    norms = []
    for v in listed(args.batch_norm, "batch-norm"):
        if v not in ("on", "off"):
            raise UsageError(f"--batch-norm takes on or off, got {v!r}")
        norms.append(v == "on")
    config = SweepConfig(
        dataset=listed(args.dataset, "dataset"), model=listed(args.model, "model"), hidden=hidden,
        activation=listed(args.activation, "activation"), batch_norm=norms,
        optimizer=listed(args.optimizer, "optimizer"),
        batch_size=[_int(b, "batch-size") for b in listed(args.batch_size, "batch-size")],
        folds=getattr(args, "folds", 0), epochs=args.epochs, patience=args.patience, lr_schedule=args.lr_schedule,
        val_fraction=args.val_fraction, train_fraction=args.train_fraction, data_seed=args.data_seed,
        data_dir=args.data_dir, chunk_size=args.chunk_size, devices=args.devices, seed=seeds, hparams=swept,
        points=points)
    return config.validate()


def _run(args: argparse.Namespace) -> int:
    processes = processes_from_args(args)
    config = config_from_args(args)
    schedules = halving_cli.halving_callbacks(args)
    out = Path(args.out or f"runs/{args.command}")
    if args.checkpoint_every < 1 or args.keep < 1:
        raise UsageError("--checkpoint-every and --keep must be at least 1")
    join_processes(processes)
    from jaxmlp import hosts
    from jaxmlp.checkpoint import default_dir

    if args.no_checkpoint and args.checkpoint_dir:
        raise UsageError("--no-checkpoint and --checkpoint-dir contradict each other; drop one of the two")
    ckpt_dir = None if args.no_checkpoint else Path(args.checkpoint_dir or default_dir(out))
    from jaxmlp.run import run_sweep

    res = run_sweep(config, out, progress=not args.quiet, checkpoint_dir=ckpt_dir, resume=args.resume,
                    new_run=args.new_run, replace=args.replace, checkpoint_every=args.checkpoint_every, keep=args.keep,
                    plots=not args.no_plots, name=out.name, command=shlex.join(["jaxmlp", *args.argv]),
                    callbacks=[*args.callbacks, *schedules])
    if hosts.is_primary():   # the others print nothing but errors
        diverged = sum(bool(m.get("diverged")) for m in res.members)
        if diverged == len(res.members):
            print(f"every member diverged ({diverged} of {diverged}: a non-finite loss or parameter); "
                  f"results in {out}/")
            return 0
        best = res.best()
        print(f"{len(res.members)} member(s) on {', '.join(res.devices)}; best validation accuracy "
              f"{best['val']['accuracy']:.4f} (member {best['index']}, test accuracy {best['test']['accuracy']:.4f}); "
              f"results in {out}/")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from jaxmlp import plots, run_dir

    run_dir.check_plots_dir(Path(args.run_dir))
    try:
        paths = plots.plot_run(args.run_dir)
    except OSError as e:
        raise UsageError(f"cannot write the figures into {Path(args.run_dir) / 'plots'} ({e.strerror or e})") from None
    print(f"wrote {len(paths)} figure(s) to {Path(args.run_dir) / 'plots'}/")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from jaxmlp import checkpoint

    metrics = checkpoint.evaluate_member(args.run_dir, args.member, args.checkpoint_dir)
    print(f"member {args.member}: test loss {metrics['loss']:.4f}, test accuracy {metrics['accuracy']:.4f}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from jaxmlp.compare import run_command

    print(run_command(args.run_dir, args.by, args.baseline, args.metric, args.split, args.power))
    return 0


def main(argv: Sequence[str] | None = None, callbacks: Sequence[Any] = ()) -> int:
    """Entry point of the ``jaxmlp`` console command. `callbacks` (:class:`jaxmlp.callbacks.Callback`)
    hook into the loop of ``train`` and ``sweep``, as from Python."""
    use_one_device_per_core()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["experiment"]:  # the studies parse their own flags and print their own errors
        from experiments.__main__ import main as experiments_main

        return experiments_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        args.callbacks = list(callbacks)
        handler = {"train": _run, "sweep": _run, "plot": _plot, "evaluate": _evaluate,
                   "compare": _compare, "hyperband": halving_cli.run_hyperband,
                   "search": search_cli.run}[args.command]
        return handler(args)
    except UsageError as e:
        print(f"jaxmlp: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("jaxmlp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
