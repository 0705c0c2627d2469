"""Study 4: depth and regularisers — does a deeper MLP need dropout, batch norm, L1/L2 or early stopping?

Five MLPs (the reference 784-512-64-10 and 784-512-256-128-64-32-16-10, and 3, 5 and 7 hidden layers
whose widths halve from 256) train with Adam at lr 1e-2 and 1e-3, each plain, with dropout 0.25, with
batch norm, with L1, with L2 (and with both, which the penalty grid gives for free) and with early
stopping. Architectures are groups of one sweep and the lr, λ and dropout values are vmapped axes, so the
whole study is four sweeps: penalties (λ₁ × λ₂ grid, which includes the plain model), dropout, batch norm
and early stopping (patience is a sweep-wide setting).

One seed (full and quick settings): the numbers are single runs, with no interval, and no test can say
which regulariser and lr are not significantly worse than the best; the summary says so. Three seeds would
triple the study's time (its full settings are the longest of the studies on CPUs); with 2 or more seeds
the same code pairs the settings of each architecture over seeds (:mod:`jaxmlp.compare`, Holm-corrected).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from experiments import common, report

NAME = "depth_and_regularizers"
TITLE = "Depth × regularisers: 2 to 7 hidden layers, plain, dropout, batch norm, L1, L2, early stopping"
ABOUT = "MLPs of 2-7 hidden layers x {plain, dropout 0.25, batch norm, L1, L2, early stopping} x lr 1e-2, 1e-3"

FULL = {
    "archs": [(512, 64), (512, 256, 128, 64, 32, 16), (256, 128, 64), (256, 128, 64, 32, 16),
              (256, 128, 128, 64, 64, 32, 16)],
    "optimizer": "adam", "lrs": [1e-2, 1e-3], "batch_size": 128, "seeds": [0],
    "dropout": 0.25, "l1": 1e-5, "l2": 1e-4, "epochs": 15, "es_patience": 3,
}
QUICK = {"archs": [(512, 64)], "epochs": 2, "es_patience": 1}
VARIANTS = ("plain", "dropout", "batch norm", "L1", "L2", "L1+L2", "early stopping")
POWER_DIFF = 1.0   # accuracy points: the difference whose detection the power estimate is about (2+ seeds)


def arch_name(hidden: Any) -> str:
    """``(512, 64)`` or ``"512,64"`` -> ``"2×: 784-512-64-10"`` (hidden-layer count first)."""
    widths = [int(w) for w in str(hidden).split(",")] if isinstance(hidden, str) else list(hidden)
    return f"{len(widths)}×: 784-" + "-".join(map(str, widths)) + "-10"


def label(sweep: str, hp: dict[str, Any]) -> str:
    """The regulariser a member of `sweep` stands for."""
    if sweep == "penalties":
        return {(False, False): "plain", (True, False): "L1", (False, True): "L2", (True, True): "L1+L2"}[
            (hp["l1"] > 0, hp["l2"] > 0)]
    return {"dropout": "dropout", "batch_norm": "batch norm", "early_stopping": "early stopping"}[sweep]


def curve(res: Any, key: str, index: int) -> np.ndarray:
    """Member `index`'s `key` per epoch from the history (accuracy in %, NaN after it stopped)."""
    vals = [line.get(key, [None] * (index + 1))[index] for line in res.history]
    return np.array([math.nan if v is None else 100.0 * v if key.endswith("accuracy") else v for v in vals])


def run(study: common.Study) -> None:
    """Four sweeps, then per-member rows, learning curves side by side and a summary figure."""
    s = study.choose(FULL, QUICK)
    hidden = [tuple(a) for a in s["archs"]]
    base = dict(hidden=hidden, optimizer=[s["optimizer"]], lr=s["lrs"], batch_size=[s["batch_size"]],
                seed=s["seeds"], epochs=s["epochs"], train_fraction=study.fraction())
    plan = {
        "penalties": study.config(**base, l1=[0.0, s["l1"]], l2=[0.0, s["l2"]]),
        "dropout": study.config(**base, dropout=[s["dropout"]]),
        "batch_norm": study.config(**base, batch_norm=[True]),
        "early_stopping": study.config(**base, patience=s["es_patience"]),
    }
    sweeps = {name: study.sweep(name, config) for name, config in plan.items()}

    # ---- one row per (architecture, regulariser, lr), seeds pooled ----
    from jaxmlp.plots import member_values

    rows: dict[tuple, dict[str, list]] = {}
    for name, res in sweeps.items():
        gaps = member_values(res, "accuracy_gap")
        for m, gap in zip(res.members, gaps):
            hp = m["hparams"]
            key = (arch_name(hp["hidden"]), label(name, hp), hp["lr"])
            r = rows.setdefault(key, {"test": [], "val": [], "best": [], "run": [], "gap": [], "curves": []})
            r["test"].append(100 * m["test"]["accuracy"])
            r["val"].append(100 * m["val"]["accuracy"] if m["val"]["accuracy"] is not None else math.nan)
            r["best"].append(m["best_epoch"])
            r["run"].append(m["epochs_run"])
            r["gap"].append(gap)
            r["curves"].append((res, m["index"]))
    archs = [arch_name(h) for h in hidden]
    order = sorted(rows, key=lambda k: (archs.index(k[0]), VARIANTS.index(k[1]), -k[2]))
    study.text(
        f"{len(archs)} architecture(s) × {len(VARIANTS)} regularisers × {len(s['lrs'])} learning rates, "
        f"Adam, batch {s['batch_size']}, {s['epochs']} epochs (early stopping: patience {s['es_patience']}, "
        f"tested at its best epoch; every other member is tested after its last epoch). Dropout "
        f"{s['dropout']:g} after each hidden layer; L1 λ₁ = {s['l1']:g}, L2 λ₂ = {s['l2']:g} on weight "
        "matrices. *Epochs to best*: the epoch with the lowest validation loss. *Gap*: train − validation "
        "accuracy at the tested epoch, in percentage points.")
    n_seeds = len(s["seeds"])
    spread = f"mean [95 % CI] over {n_seeds} seeds" if n_seeds > 1 else "one seed: single runs, no interval"
    table = []
    for k in order:
        r = rows[k]
        table.append([k[0], k[1], f"{k[2]:g}", report.pm_ci(report.mean_std(r["test"])),
                      report.pm_ci(report.mean_std(r["val"])), report.pm_ci(report.mean_std(r["best"]), 1),
                      report.pm_ci(report.mean_std(r["run"]), 1), report.pm_ci(report.mean_std(r["gap"]))])
    study.table(["architecture", "regulariser", "lr", "test acc (%)", "val acc (%)", "epochs to best",
                 "epochs run", "gap (pp)"], table, title=f"Every member ({spread})")
    # Printed: each architecture's best regulariser and lr (chosen on validation accuracy).
    short, numbers = [], {}
    # Every member of the four sweeps as one setting "regulariser, lr", paired per architecture and seed.
    keep = ("hidden", "seed")
    settings = report.relabel([report.relabel([res], "setting", lambda hp, n=name: f"{label(n, hp)}, lr {hp['lr']:g}",
                                              keep) for name, res in sweeps.items()],
                              "setting", lambda hp: hp["setting"], keep)
    hiddens = {arch_name(m["hparams"]["hidden"]): m["hparams"]["hidden"] for m in settings.members}
    for a in archs:
        cands = {k: report.mean_std(rows[k]["val"]) for k in order if k[0] == a}
        best = report.best_by(cands)
        plain = max((k for k in order if k[0] == a and k[1] == "plain"),
                    key=lambda k: report.mean_std(rows[k]["val"])[0])
        numbers[a] = {"best_regulariser": best[1], "best_lr": best[2],
                      "best_test_accuracy": report.mean_std(rows[best]["test"])[0],
                      "plain_test_accuracy": report.mean_std(rows[plain]["test"])[0], "seeds": n_seeds}
        short.append([a, best[1], f"{best[2]:g}", report.pm_ci(report.mean_std(rows[best]["test"])),
                      report.pm_ci(report.mean_std(rows[plain]["test"])), f"{plain[2]:g}"])
    study.numbers.update(numbers)
    study.table(["architecture", "best regulariser (val)", "lr", "test acc (%)", "plain: test acc (%)",
                 "plain lr"], short, title=f"Best regulariser per architecture ({spread})", show=True)
    for a in archs:
        found = report.not_worse(settings, "setting", where={"hidden": hiddens[a]}, power_diff=POWER_DIFF)
        report.record_not_worse(study, a, found, f"{a}: every regulariser and lr against the best on test accuracy")

    # ---- figures ----
    from jaxmlp.stats import t_interval

    colors = dict(zip(VARIANTS, report.LINE_COLORS))
    # Early stopping follows the plain run until it stops (same seed, same draws): dotted, on top.
    dashes = {v: (0, (1.5, 1.5)) if v == "early stopping" else "-" for v in VARIANTS}
    for lr in s["lrs"]:
        fig, axes = report.new_figure(3.0 * len(archs) + 1.0, 6.0, 2, len(archs), sharex=True, sharey="row")
        with report.styled():
            for c, a in enumerate(archs):
                for v in VARIANTS:
                    k = (a, v, lr)
                    if k not in rows:
                        continue
                    res, i = rows[k]["curves"][0]
                    epochs = np.arange(1, len(res.history) + 1)
                    top = 3 if v == "early stopping" else 2
                    axes[0, c].plot(epochs, curve(res, "val_accuracy", i), color=colors[v], label=v,
                                    linestyle=dashes[v], zorder=top)
                    axes[1, c].plot(epochs, curve(res, "train_loss", i), color=colors[v], linestyle=dashes[v],
                                    zorder=top)
                    axes[1, c].plot(epochs, curve(res, "val_loss", i), color=colors[v], linestyle="--",
                                    alpha=0.8, zorder=top)
                axes[0, c].set_title(a, fontsize=9)
                axes[1, c].set_xlabel("epoch")
            axes[0, 0].set_ylabel("validation accuracy (%)")
            axes[1, 0].set_ylabel("loss (nats): train solid, validation dashed")
            report.integer_epochs(*axes.flat)
            handles, labels = axes[0, 0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside lower center", ncols=len(VARIANTS))
        fig.suptitle(f"Learning curves by architecture, Adam lr {lr:g} (seed {s['seeds'][0]})")
        study.figure(fig, f"learning_curves_lr{lr:g}.png",
                     f"Learning curves side by side, one panel per architecture, lr {lr:g}")

    fig, axes = report.new_figure(11.0, 4.5, 1, len(s["lrs"]), sharey=True)
    with report.styled():
        for ax, lr in zip(axes[0], s["lrs"]):
            width = 0.8 / len(VARIANTS)
            for j, v in enumerate(VARIANTS):
                xs, ms, half = [], [], []
                for c, a in enumerate(archs):
                    if (a, v, lr) in rows:
                        mean, std, n = report.mean_std(rows[(a, v, lr)]["test"])
                        xs.append(c - 0.4 + width * (j + 0.5))
                        ms.append(mean)
                        half.append(mean - t_interval(mean, std, n)[0] if n > 1 else 0.0)
                ax.errorbar(xs, ms, yerr=half, color=colors[v], marker="o", linestyle="none", label=v)
            ax.set_xticks(range(len(archs)), [a.split(": ")[1] for a in archs], rotation=20, ha="right",
                          fontsize=7.5)
            ax.set_xlabel("architecture")
            ax.set_title(f"Adam lr {lr:g}")
        axes[0, 0].set_ylabel("test accuracy (%)")
        axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"Test accuracy per architecture and regulariser ({spread})")
    study.figure(fig, "test_accuracy_by_regulariser.png", "Test accuracy per architecture and regulariser")


if __name__ == "__main__":
    sys.exit(common.study_main(NAME))
