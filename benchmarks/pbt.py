"""Population-based training against random search with the same members and epochs (the issue's bar).

For each repetition r (seeds 0, 1, 2): 16 starting points over lr (log 1e-4..1e-1) and dropout (0..0.6)
drawn with seed r (``jaxmlp.search.sample``), the training seed r; two sweeps of 784-256-128-10 (Adam,
batch 128, 10 epochs, the default annealed schedule) on real Fashion-MNIST (54,000 train / 6,000
validation images):

- random: the 16 points trained as they are;
- PBT: the same 16 points with ``PBT(every=2, fraction=0.25, seed=r)`` exploring lr and dropout in the
  same ranges (:mod:`jaxmlp.search.pbt`).

Until the first exploit (after epoch 2) the two sweeps are the same computation, so their difference is
PBT's doing alone. Prints per repetition the best member's validation accuracy (what both arms select
on) and its test accuracy, then the means over repetitions, and the times; the bar is met when PBT's
mean best validation accuracy is at least random search's. Writes ``benchmarks/results/pbt.json`` and
``pbt_schedules.png`` (repetition 0's schedules and lineage); ``--quick`` (10 % of the training set, 4
epochs) writes ``pbt_quick.*`` instead and checks that the script runs, not the bar.

    python benchmarks/pbt.py [--quick] [--reps 3] [--members 16] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DATA = "/usr/share/datasets/fashion-mnist"
SPACE = {"lr": (1e-4, 1e-1), "dropout": (0.0, 0.6)}   # lr on the table's log axis


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="10 %% of the training set, 4 epochs: a check that it runs")
    p.add_argument("--reps", type=int, default=3, help="repetitions of the whole procedure (seeds 0..reps-1)")
    p.add_argument("--members", type=int, default=16)
    p.add_argument("--epochs", type=int, help="default 10 (4 with --quick)")
    p.add_argument("--train-fraction", type=float, help="default 1.0 (0.1 with --quick)")
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--data-dir", default=DATA)
    return p.parse_args()


def main() -> None:
    args = _args()
    import jaxmlp
    from jaxmlp.plots.pbt import pbt_schedules
    from jaxmlp.search import sample
    from jaxmlp.search.pbt import final_hparams, pbt_sweep

    epochs = args.epochs or (4 if args.quick else 10)
    fraction = args.train_fraction or (0.1 if args.quick else 1.0)
    name = "pbt_quick" if args.quick else "pbt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = dict(dataset=["fashion_mnist"], data_dir=args.data_dir, hidden=[(256, 128)], batch_size=[128],
                epochs=epochs, train_fraction=fraction)
    reps = []
    for r in range(args.reps):
        config = jaxmlp.SweepConfig(**base, seed=[r])
        points = sample(SPACE, args.members, seed=r)
        t0 = time.perf_counter()
        rand = jaxmlp.sweep(jaxmlp.SweepConfig(**base, seed=[r], points=points), progress=False, plots=False)
        t1 = time.perf_counter()
        pbt = pbt_sweep(config, SPACE, n=args.members, seed=r, every=args.every, progress=False, plots=False)
        t2 = time.perf_counter()
        assert [m["hparams"]["lr"] for m in pbt.members] == [p["lr"] for p in points]   # the same starts
        if r == 0:
            fig = pbt_schedules(pbt)
            fig.savefig(RESULTS / f"{name}_schedules.png", dpi=120, bbox_inches="tight", facecolor="white")
        row = {"rep": r}
        for arm, res, wall in (("random", rand, t1 - t0), ("pbt", pbt, t2 - t1)):
            best = res.best()
            row[arm] = {"best_val_accuracy": best["val"]["accuracy"], "its_test_accuracy": best["test"]["accuracy"],
                        "best_member": best["index"], "wall_s": round(wall, 1),
                        "train_s": res.timing["train_s"], "compile_s": res.timing["compile_s"]}
        row["pbt"]["exploits"] = len(pbt.events)
        row["pbt"]["best_final_hparams"] = final_hparams(pbt)[row["pbt"]["best_member"]]
        row["random"]["best_hparams"] = {k: rand.members[row["random"]["best_member"]]["hparams"][k] for k in SPACE}
        reps.append(row)
        print(f"rep {r}: best val acc  random {row['random']['best_val_accuracy']:.4f} "
              f"(test {row['random']['its_test_accuracy']:.4f}, {row['random']['wall_s']:.0f} s)  "
              f"PBT {row['pbt']['best_val_accuracy']:.4f} (test {row['pbt']['its_test_accuracy']:.4f}, "
              f"{row['pbt']['wall_s']:.0f} s, {row['pbt']['exploits']} exploits, best ends at "
              + ", ".join(f"{k} {v:.3g}" for k, v in row["pbt"]["best_final_hparams"].items()) + ")", flush=True)

    mean = {arm: {k: statistics.fmean(row[arm][k] for row in reps)
                  for k in ("best_val_accuracy", "its_test_accuracy", "wall_s")} for arm in ("random", "pbt")}
    met = mean["pbt"]["best_val_accuracy"] >= mean["random"]["best_val_accuracy"]
    print(f"mean over {len(reps)} reps: best val acc random {mean['random']['best_val_accuracy']:.4f}, "
          f"PBT {mean['pbt']['best_val_accuracy']:.4f} (test {mean['random']['its_test_accuracy']:.4f} vs "
          f"{mean['pbt']['its_test_accuracy']:.4f}); wall {mean['random']['wall_s']:.0f} s vs "
          f"{mean['pbt']['wall_s']:.0f} s per sweep; bar (PBT >= random on validation): {'met' if met else 'NOT met'}"
          + (" [--quick: not the bar's setting]" if args.quick else ""))
    import jax

    out = {"setting": {"space": {k: list(v) for k, v in SPACE.items()}, "members": args.members, "epochs": epochs,
                       "train_fraction": fraction, "hidden": [256, 128], "batch_size": 128, "every": args.every,
                       "fraction": 0.25, "perturb": [0.8, 1.25], "resample": 0.25, "quick": args.quick},
           "reps": reps, "mean": mean, "bar_met": met,
           "machine": {"platform": platform.platform(), "backend": jax.default_backend(),
                       "devices": [str(d) for d in jax.devices()]},
           "command": "python " + " ".join(sys.argv)}
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS / f'{name}.json'} and {RESULTS / f'{name}_schedules.png'}")


if __name__ == "__main__":
    main()
