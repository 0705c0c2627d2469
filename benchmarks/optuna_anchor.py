"""The Optuna bar's anchor, reproduced: Optuna (TPE) driving PyTorch trials one after another.

The issue's anchor, measured on this project's 2-core machine: 64 trials x 3 epochs of 784-8-16-10 on
54,000 Fashion-MNIST images over (lr log 1e-4..1e-1, dropout 0..0.6, L2 log 1e-6..1e-2): 72 s without
pruning, 68-69 s with Optuna's SuccessiveHalving pruner; best validation accuracy 0.840-0.847. Its script
is not in this repository, so this one rebuilds it with the training settings of jaxmlp's search
(benchmarks/optuna_search.py), to compare the two searches trial budget for trial budget and seed for seed:
Adam, minibatches of 128 reshuffled every epoch, dropout after each hidden layer, Keras's coupled L2 on the
weight matrices (lambda * sum w^2 added to the loss), 6,000 validation images held out (10 %, stratified),
the validation accuracy after epoch 3 told to the study. Each trial builds a fresh model, so the trials
of a search differ in initialisation (torch's generator, seeded once per search with the search seed),
where jaxmlp's trials share their seed's. The wall time counts the search alone (data loaded and torch
imported before).

Needs torch and optuna, which jaxmlp does not: in a venv of its own,
``pip install torch==2.13.0 optuna numpy`` (this machine's CPU wheel), then

    python benchmarks/optuna_anchor.py                  # seeds 0,1,2, without and with pruning
    python benchmarks/optuna_anchor.py --pruners none   # without pruning only

Writes benchmarks/results/optuna_anchor.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file as a numpy array (uint8 images or labels; the file's header gives the shape)."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def split(labels: np.ndarray, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded stratified split of positions into (train, validation)."""
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:round(val_fraction * (labels == c).sum())]
                          for c in np.unique(labels)])
    return np.setdiff1d(np.arange(len(labels)), val), np.sort(val)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--pruners", default="none,halving")
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()

    import optuna
    import torch
    from torch import nn

    torch.set_num_threads(2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x = torch.from_numpy(read_idx(DATA / "train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    y_all = read_idx(DATA / "train-labels-idx1-ubyte.gz").astype(np.int64)
    y = torch.from_numpy(y_all)
    tr, va = (torch.from_numpy(i) for i in split(y_all))
    x_tr, y_tr, x_va, y_va = x[tr], y[tr], x[va], y[va]

    def objective(trial: "optuna.Trial") -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.6)
        l2 = trial.suggest_float("l2", 1e-6, 1e-2, log=True)
        model = nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Dropout(dropout),
                              nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 10))
        weights = [m.weight for m in model if isinstance(m, nn.Linear)]
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss()
        acc = 0.0
        for epoch in range(args.epochs):
            model.train()
            for idx in torch.randperm(len(x_tr)).split(args.batch_size):
                loss = loss_fn(model(x_tr[idx]), y_tr[idx]) + l2 * sum((w * w).sum() for w in weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                acc = (model(x_va).argmax(1) == y_va).float().mean().item()
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    rows = []
    for pruner in args.pruners.split(","):
        runs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            torch.manual_seed(seed)
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                        pruner=(optuna.pruners.SuccessiveHalvingPruner() if pruner == "halving"
                                                else optuna.pruners.NopPruner()))
            t0 = time.perf_counter()
            study.optimize(objective, n_trials=args.trials)
            wall = time.perf_counter() - t0
            pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
            runs.append({"seed": seed, "wall_s": round(wall, 2), "best_val_accuracy": round(study.best_value, 4),
                         "best_params": study.best_params, "pruned": pruned})
            print(f"pruner {pruner:8s} seed {seed}: {wall:6.1f} s, best val {study.best_value:.4f}, pruned {pruned}",
                  flush=True)
        row = {"pruner": pruner, "runs": runs,
               "wall_s_mean": round(statistics.mean(r["wall_s"] for r in runs), 2),
               "best_val_accuracy_mean": round(statistics.mean(r["best_val_accuracy"] for r in runs), 4)}
        rows.append(row)
        print(f"  -> mean {row['wall_s_mean']:.1f} s, best val accuracy mean {row['best_val_accuracy_mean']:.4f}",
              flush=True)
    out = ROOT / "benchmarks" / "results" / "optuna_anchor.json"
    out.write_text(json.dumps({"command": " ".join(["python", "benchmarks/optuna_anchor.py", *sys.argv[1:]]),
                               "torch": torch.__version__, "optuna": optuna.__version__, "trials": args.trials,
                               "epochs": args.epochs, "batch_size": args.batch_size, "rows": rows}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
