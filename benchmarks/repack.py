"""Repacking: a 256-member tiny sweep where 7 of 8 members stop after epoch 1 then trains each epoch about as
fast as a 32-member sweep (bar: at most 1.5 times its time), where masking alone keeps paying for 256.

Three sweeps of 784-8-16-10 (Adam, batch 128, constant learning rate), measured in one process and one run
(a shared machine drifts: compare only figures from one run):
- "32": the 32 members that survive below, as a sweep of their own;
- "repacked": 256 points (16 learning rates × 16 dropout rates); after epoch 1 a schedule stops every member
  whose index is not a multiple of 8, and the 32 left are packed into a smaller batch (``repack=True``:
  whenever it at least halves the work; the default ``"auto"`` also weighs the saving against a compile,
  and may keep a short, small sweep as it is);
- "masked": the same with ``repack=False``: stopped members stay in the batch, masked.
Seconds per epoch: the median over epochs 3..E (timed by callbacks around each epoch; epoch 1 compiles
the first program and epoch 2 the repacked one, so both are left out). Prints repacked/32 (bar <= 1.5)
and masked/32, and writes benchmarks/results/repack.json.

    python benchmarks/repack.py [--epochs 6] [--synthetic]      # full: ~54,000 training images
    python benchmarks/repack.py --quick                         # 10 % of the training set, 5 epochs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from bench_data import REAL, fashion_or_synthetic

RESULTS = Path(__file__).resolve().parent / "results"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=6, help="epochs per sweep (epochs 3.. are timed; default 6)")
    p.add_argument("--quick", action="store_true", help="10 %% of the training set and 5 epochs: a smoke test")
    p.add_argument("--synthetic", action="store_true", help="synthetic data of Fashion-MNIST's shape")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", type=Path, help="results file (default benchmarks/results/repack.json; "
                                            "repack_quick.json with --quick)")
    args = p.parse_args()
    if args.quick:
        args.epochs = min(args.epochs, 5)
    args.out = args.out or RESULTS / ("repack_quick.json" if args.quick else "repack.json")
    if args.epochs < 4:
        p.error("--epochs must be at least 4 (epochs 3.. are timed)")
    return args


ARGS = _args()
import jaxmlp  # noqa: E402  (after parsing: gives a CPU one device per core, as the jaxmlp command does)
import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxmlp.callbacks import Callback  # noqa: E402

KEEP_EVERY = 8


class KeepEighth(Callback):
    """After epoch 1, stop every member whose index is not a multiple of 8 (7 in 8 of them)."""

    def on_population(self, population):
        if population.epoch == 1:
            population.stop([i for i in population.active() if i % KEEP_EVERY], rung=0)


class EpochTimer(Callback):
    """Wall seconds of each epoch (training and validation of every unit), by epoch."""

    def __init__(self):
        self.seconds: dict[int, float] = {}
        self._t0 = 0.0

    def on_epoch_start(self, epoch):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, record):
        self.seconds[epoch] = time.perf_counter() - self._t0


def data_dir() -> str:
    return fashion_or_synthetic(ARGS.synthetic)


def main() -> None:
    dd = data_dir()
    lrs = [float(f"{v:.4g}") for v in np.geomspace(1e-4, 1e-1, 16)]
    rates = [float(f"{v:.4g}") for v in np.linspace(0.0, 0.5, 16)]
    points = [{"lr": lr, "dropout": p} for lr in lrs for p in rates]     # member i is point i (one stream)
    survivors = points[::KEEP_EVERY]

    def config(pts):
        return jaxmlp.SweepConfig(data_dir=dd, hidden=[(8, 16)], batch_size=[ARGS.batch_size], epochs=ARGS.epochs,
                                  lr_schedule="constant", points=pts, train_fraction=0.1 if ARGS.quick else 1.0)

    runs = {}
    for label, pts, callbacks, repack in (("32", survivors, [], True), ("repacked", points, [KeepEighth()], True),
                                          ("masked", points, [KeepEighth()], False)):
        timer = EpochTimer()
        t = time.perf_counter()
        res = jaxmlp.sweep(config(pts), progress=False, plots=False, callbacks=[*callbacks, timer], repack=repack)
        wall = time.perf_counter() - t
        timed = [timer.seconds[e] for e in range(3, ARGS.epochs + 1)]
        runs[label] = {"members": len(res.members), "epoch_s": statistics.median(timed),
                       "epoch_times": [round(timer.seconds[e], 4) for e in sorted(timer.seconds)],
                       "wall_s": round(wall, 2), **res.timing}
        print(f"{label:>8}: {len(res.members):3d} members, {runs[label]['epoch_s']:.3f} s/epoch after epoch 2 "
              f"(epochs: {', '.join(f'{s:.2f}' for s in runs[label]['epoch_times'])}); compile "
              f"{res.timing['compile_s']:.1f} s, {res.timing['compiled_epochs']} epoch program(s), "
              f"{res.timing['member_epochs']} member-epochs", flush=True)
    ratio = runs["repacked"]["epoch_s"] / runs["32"]["epoch_s"]
    masked = runs["masked"]["epoch_s"] / runs["32"]["epoch_s"]
    print(f"repacked / 32-member: {ratio:.2f} (bar <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'}); "
          f"masked / 32-member: {masked:.2f}")
    devices = jax.local_devices()
    out = {"machine": f"{devices[0].platform}-{platform.machine()}-{os.cpu_count()}cores",
           "devices": [str(d) for d in devices], "jax": jax.__version__, "quick": ARGS.quick,
           "model": "784-8-16-10", "batch_size": ARGS.batch_size, "epochs": ARGS.epochs,
           "data": "synthetic" if dd != str(REAL) else "fashion_mnist", "train_fraction": 0.1 if ARGS.quick else 1.0,
           "timed_epochs": f"3..{ARGS.epochs} (median)", "runs": runs,
           "repacked_over_32": ratio, "masked_over_32": masked, "bar": 1.5, "met": ratio <= 1.5}
    ARGS.out.parent.mkdir(parents=True, exist_ok=True)
    ARGS.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {ARGS.out}")


if __name__ == "__main__":
    main()
