"""Study 5: optimizer × learning rate × batch size on a small sigmoid MLP, then a deeper net at the best.

784-32-10 with a sigmoid hidden layer trains with SGD, Adam, Nadam and RMSprop at lr 0.001, 0.01 and
0.1 and batch sizes 128 and 256 — one SweepConfig: each optimizer × batch size is a group (they change
the program) and the learning rates are vmapped inside it (each member's lr lives in its optimizer
state). The best setting (highest mean validation accuracy over seeds) then trains the deeper
784-64-32-32-10.

Members that share a seed share initialisation and minibatch order, so the 24 settings are compared
paired over seeds (:mod:`jaxmlp.compare`, Holm-corrected over 23 comparisons), as are the deeper and the
shallow net at the best setting. With three seeds (the full settings) only large differences show; the
summary estimates, from the run's own paired spread, how many seeds a 1-point difference needs.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from experiments import common, report

NAME = "optimizers_lr_batch"
TITLE = "Optimizer × learning rate × batch size on 784-32(sigmoid)-10, then 784-64-32-32-10 at the best"
ABOUT = "sgd/adam/nadam/rmsprop x lr 0.001-0.1 x batch 128/256 on 784-32(sigmoid)-10; deeper net at the best"

FULL = {
    "hidden": (32,), "activation": "sigmoid", "optimizers": ["sgd", "adam", "nadam", "rmsprop"],
    "lrs": [1e-3, 1e-2, 1e-1], "batch_sizes": [128, 256], "seeds": [0, 1, 2], "epochs": 20,
    "deep_hidden": (64, 32, 32),
}
QUICK = {"optimizers": ["sgd", "adam"], "seeds": [0, 1], "epochs": 2}
POWER_DIFF = 1.0   # accuracy points: the difference whose detection the summary's power estimate is about


def setting(hp: dict[str, Any]) -> str:
    """A member's optimizer, batch size and lr as one value (what the comparison ranks)."""
    return f"{hp['optimizer']}/{hp['batch_size']}/{hp['lr']:g}"


def deeper_gain(grid: Any, deep: Any, best: tuple) -> dict[str, Any]:
    """Deeper minus shallow test accuracy at the best setting (points), paired over seeds."""
    shallow = {m["hparams"]["seed"]: 100 * m["test"]["accuracy"] for m in grid.members
               if (m["hparams"]["optimizer"], m["hparams"]["batch_size"], m["hparams"]["lr"]) == best}
    deeper = {m["hparams"]["seed"]: 100 * m["test"]["accuracy"] for m in deep.members}
    return report.paired_difference(deeper, shallow, "deeper − shallow test accuracy")


def subset(res: Any, **where: Any) -> Any:
    """The members of `res` with these settings, as a Results (history kept: it is indexed by member)."""
    from jaxmlp.results import Results

    members = [m for m in res.members if all(m["hparams"].get(k) == v for k, v in where.items())]
    return Results(res.config, members, res.history, res.timing, res.versions, res.devices)


def val_curve(res: Any, index: int) -> np.ndarray:
    """Member `index`'s validation accuracy (%) per epoch, NaN after it stopped."""
    return np.array([math.nan if (v := line["val_accuracy"][index]) is None else 100 * v for line in res.history])


def run(study: common.Study) -> None:
    """The grid sweep, heatmaps per batch size, then the deeper model at the best setting."""
    s = study.choose(FULL, QUICK)
    grid = study.sweep("grid", study.config(
        hidden=[s["hidden"]], activation=[s["activation"]], optimizer=s["optimizers"], lr=s["lrs"],
        batch_size=s["batch_sizes"], seed=s["seeds"], epochs=s["epochs"], train_fraction=study.fraction()))
    keys = ["optimizer", "batch_size", "lr"]
    val = report.pooled(grid, keys, "accuracy", "val")
    test = report.pooled(grid, keys, "accuracy", "test")
    best = report.best_by(val)
    opt, batch, lr = best
    deep = study.sweep("deeper", study.config(
        hidden=[s["deep_hidden"]], activation=[s["activation"]], optimizer=[opt], lr=[lr], batch_size=[batch],
        seed=s["seeds"], epochs=s["epochs"], train_fraction=study.fraction()))
    deep_val = report.pooled(deep, [], "accuracy", "val")[()]
    deep_test = report.pooled(deep, [], "accuracy", "test")[()]

    n = len(s["seeds"])
    same = report.not_worse(report.relabel([grid], "setting", setting), "setting", power_diff=POWER_DIFF)
    study.numbers.update({"best": {"optimizer": opt, "batch_size": batch, "lr": lr,
                                   "val_accuracy": val[best][0], "test_accuracy": test[best][0]},
                          "deeper": {"hidden": list(s["deep_hidden"]), "val_accuracy": deep_val[0],
                                     "test_accuracy": deep_test[0], "vs_shallow": deeper_gain(grid, deep, best)},
                          "test_accuracy": {f"{o}/{b}/{l:g}": v[0] for (o, b, l), v in test.items()}})
    study.text(
        f"{len(s['optimizers'])} optimizers × {len(s['lrs'])} learning rates × {len(s['batch_sizes'])} batch "
        f"sizes × {n} seed(s) in one sweep ({len(s['optimizers']) * len(s['batch_sizes'])} groups, the "
        f"learning rates vmapped in each), {s['epochs']} epochs, no early stopping. Best setting (highest "
        f"mean validation accuracy): **{opt}, lr {lr:g}, batch {batch}** — test accuracy "
        f"{report.pm_ci(test[best])} %. The deeper 784-{'-'.join(map(str, s['deep_hidden']))}-10 at that "
        f"setting: test accuracy {report.pm_ci(deep_test)} %; "
        f"{study.numbers['deeper']['vs_shallow']['statement']}. Accuracies: mean and 95 % t interval over "
        f"{n} seed(s). On test accuracy, {same['statement']}.")
    report.record_not_worse(study, "setting", same, "Every optimizer/batch/lr against the best on test accuracy")
    short = []
    for o in s["optimizers"]:
        mine = {k: v for k, v in val.items() if k[0] == o}
        b = report.best_by(mine)
        short.append([o, f"{b[2]:g}", str(b[1]), report.pm_ci(val[b]), report.pm_ci(test[b])])
    short.append([f"deeper {'-'.join(map(str, s['deep_hidden']))} ({opt})", f"{lr:g}", str(batch),
                  report.pm_ci(deep_val), report.pm_ci(deep_test)])
    study.table(["optimizer", "best lr", "batch", "val acc (%)", "test acc (%)"], short,
                title=f"Best learning rate and batch size per optimizer (chosen on validation; mean [95 % CI] "
                      f"over {n} seed(s))", show=True)
    rows = [[o, str(b), f"{l:g}", report.pm_ci(val[(o, b, l)]), report.pm_ci(test[(o, b, l)])]
            for (o, b, l) in val]
    study.table(["optimizer", "batch", "lr", "val acc (%)", "test acc (%)"], rows,
                title=f"Every setting (mean [95 % CI] over {n} seed(s))")

    # ---- figures ----
    from jaxmlp import plots

    fig, axes = report.new_figure(5.5 * len(s["batch_sizes"]), 4.4, 1, len(s["batch_sizes"]))
    for ax, b in zip(axes[0], s["batch_sizes"]):
        plots.heatmap(subset(grid, batch_size=b), "lr", "optimizer", "accuracy", "test", ax=ax)
        ax.set_title(f"batch size {b}: test accuracy (%)\nmean over {n} seed(s), 784-32(sigmoid)-10, "
                     f"{s['epochs']} epochs", fontsize=9.5)
    fig.suptitle("Test accuracy over optimizer × learning rate, one heatmap per batch size")
    study.figure(fig, "heatmaps_test_accuracy.png", "Test accuracy heatmaps (optimizer × lr), one per batch size")

    fig, axes = report.new_figure(6.0, 4.0)
    ax = axes[0, 0]
    with report.styled():
        shallow = [m["index"] for m in grid.members
                   if (m["hparams"]["optimizer"], m["hparams"]["batch_size"], m["hparams"]["lr"]) == best]
        for res, idx, name, color in ((grid, shallow, "784-32-10", plots.OKABE_ITO[0]),
                                      (deep, [m["index"] for m in deep.members],
                                       "784-" + "-".join(map(str, s["deep_hidden"])) + "-10", plots.OKABE_ITO[1])):
            for j, i in enumerate(idx):
                c = val_curve(res, i)
                ax.plot(np.arange(1, len(c) + 1), c, color=color, alpha=0.85, label=name if j == 0 else None)
        ax.set_xlabel("epoch")
        report.integer_epochs(ax)
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(f"Shallow vs deeper at the best setting: {opt}, lr {lr:g}, batch {batch}\n"
                     f"one line per seed")
        ax.legend(loc="lower right")
    study.figure(fig, "shallow_vs_deeper.png", "Validation accuracy per epoch, shallow vs deeper at the best setting")


if __name__ == "__main__":
    sys.exit(common.study_main(NAME))
