"""Successive halving against the full grid it prunes: the same best validation accuracy (bar: within 0.3
points) for a fraction of the wall time (bar: at most 35 %).

An 81-point grid of 784-256-128-10 on Fashion-MNIST (Adam, batch 128, the default annealed learning rate,
9 epochs): 3 learning rates × 3 dropout rates × 9 L2 strengths. Two arms, each in a fresh process (so each
pays its own compiles, as a user would; one after the other, in one run of this script: a shared machine
drifts, so compare only figures from one run), each with an empty compilation cache of its own:
- "full": every point trains 9 epochs (729 member-epochs);
- "halving": :class:`jaxmlp.search.halving.SuccessiveHalving` with η = 3 from epoch 1: rungs after epochs 1
  and 3 keep 27, then 9 points (81 + 27·2 + 9·6 = 189 member-epochs, 26 %); stopped members leave the
  compiled batch.
Wall time: the whole ``jaxmlp.sweep`` call (data, compiles, training, test evaluation). Prints each arm's
best validation accuracy (and that member's test accuracy), the difference in points, the wall-time ratio
and the member-epochs; writes benchmarks/results/halving.json and halving_compute.png (the best validation
accuracy against member-epochs, both arms on one axes).

    python benchmarks/halving.py             # the full benchmark: several minutes on 2 CPU cores
    python benchmarks/halving.py --quick     # 27 points, 10 % of the training set: a smoke test
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_data import REAL, fashion_or_synthetic

RESULTS = Path(__file__).resolve().parent / "results"
LRS = [3e-4, 1e-3, 3e-3]
DROPOUTS = [0.0, 0.2, 0.4]
L2S = [0.0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3]
L2S_QUICK = [0.0, 1e-4, 1e-3]


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="27 points (3 L2 strengths), 10 %% of the training set")
    p.add_argument("--epochs", type=int, default=9, help="epochs of the full grid (default 9: rungs at 1 and 3)")
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--synthetic", action="store_true", help="synthetic data of Fashion-MNIST's shape")
    p.add_argument("--out", type=Path, help="results file (default benchmarks/results/halving.json; "
                                            "halving_quick.json with --quick)")
    p.add_argument("--arm", choices=("full", "halving"), help=argparse.SUPPRESS)       # a child process's arm
    p.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.out = args.out or RESULTS / ("halving_quick.json" if args.quick else "halving.json")
    return args


def config(args: argparse.Namespace):
    import jaxmlp

    return jaxmlp.SweepConfig(data_dir=args.data_dir, hidden=[(256, 128)], batch_size=[128], epochs=args.epochs,
                              lr=LRS, dropout=DROPOUTS, l2=L2S_QUICK if args.quick else L2S,
                              train_fraction=0.1 if args.quick else 1.0)


def arm(args: argparse.Namespace) -> None:
    """One arm, in this (fresh) process: train, then write the run's results and its wall time."""
    t = time.perf_counter()
    import jaxmlp
    from jaxmlp.search.halving import SuccessiveHalving

    schedules = [SuccessiveHalving(args.eta)] if args.arm == "halving" else []
    res = jaxmlp.sweep(config(args), progress=False, plots=False, callbacks=schedules)
    wall = time.perf_counter() - t
    res.write(args.run_dir)
    (args.run_dir / "wall.json").write_text(json.dumps({"wall_s": wall}))
    best = res.best()
    print(f"{args.arm:>8}: {len(res.members)} members, {wall:.1f} s wall ({res.timing['compile_s']:.1f} s compiling, "
          f"{res.timing['compiled_epochs']} epoch program(s)), {res.timing['member_epochs']} member-epochs; best "
          f"validation accuracy {best['val']['accuracy']:.4f}", flush=True)


def data_dir(args: argparse.Namespace) -> str:
    return fashion_or_synthetic(args.synthetic)


def main(args: argparse.Namespace) -> None:
    dd = data_dir(args)
    work = Path(tempfile.mkdtemp(prefix="halving_bench_"))
    for name in ("full", "halving"):
        cmd = [sys.executable, __file__, "--arm", name, "--run-dir", str(work / name), "--data-dir", dd,
               "--epochs", str(args.epochs), "--eta", str(args.eta), *(["--quick"] if args.quick else [])]
        # An empty compilation cache of its own: each arm compiles everything it runs, as on a first run.
        subprocess.run(cmd, check=True, env={**os.environ, "JAXMLP_COMPILATION_CACHE": str(work / f"{name}-xla")})

    from jaxmlp.plots.compute import save_compute_plot
    from jaxmlp.results import Results

    res = {name: Results.read(work / name) for name in ("full", "halving")}
    wall = {name: json.loads((work / name / "wall.json").read_text())["wall_s"] for name in res}
    arms = {}
    for name, r in res.items():
        best = r.best()
        arms[name] = {"wall_s": round(wall[name], 2), "best_val_accuracy": best["val"]["accuracy"],
                      "best_test_accuracy": best["test"]["accuracy"], "best_hparams": best["hparams"],
                      "statuses": dict(collections.Counter(m["status"] for m in r.members)),
                      **r.timing}
    diff = 100 * (arms["full"]["best_val_accuracy"] - arms["halving"]["best_val_accuracy"])
    ratio = wall["halving"] / wall["full"]
    me = arms["halving"]["member_epochs"] / arms["full"]["member_epochs"]
    print(f"best validation accuracy: full grid {arms['full']['best_val_accuracy']:.4f}, successive halving "
          f"{arms['halving']['best_val_accuracy']:.4f}: {diff:+.2f} points behind (bar <= 0.3: "
          f"{'met' if diff <= 0.3 else 'NOT met'})")
    print(f"wall time: {wall['halving']:.1f} s against {wall['full']:.1f} s = {ratio:.0%} (bar <= 35 %: "
          f"{'met' if ratio <= 0.35 else 'NOT met'}); member-epochs {arms['halving']['member_epochs']} against "
          f"{arms['full']['member_epochs']} = {me:.0%}")
    import jax

    devices = jax.local_devices()
    suffix = "_quick" if args.quick else ""
    plot = save_compute_plot({f"successive halving (η = {args.eta})": res["halving"], "full grid": res["full"]},
                             RESULTS / f"halving{suffix}_compute.png")
    out = {"machine": f"{devices[0].platform}-{platform.machine()}-{os.cpu_count()}cores",
           "devices": [str(d) for d in devices], "jax": jax.__version__, "quick": args.quick,
           "model": "784-256-128-10", "batch_size": 128, "epochs": args.epochs, "eta": args.eta,
           "grid": {"lr": LRS, "dropout": DROPOUTS, "l2": L2S_QUICK if args.quick else L2S},
           "data": "fashion_mnist" if dd == str(REAL) else "synthetic", "train_fraction": 0.1 if args.quick else 1.0,
           "arms": arms, "val_accuracy_points_behind": diff, "wall_ratio": ratio, "member_epochs_ratio": me,
           "bars": {"points_behind": 0.3, "wall_ratio": 0.35}, "met": diff <= 0.3 and ratio <= 0.35,
           "plot": plot.name}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out} and {plot}")


if __name__ == "__main__":
    ARGS = _args()
    if ARGS.arm:
        arm(ARGS)
    else:
        main(ARGS)
