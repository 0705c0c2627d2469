"""Study 2: L1 vs L2 penalty strength λ on M1 — accuracy and the share of near-zero weights.

M1 (784-8-16-10, ReLU) trains with λ₁ and λ₂ each in {0} ∪ {1e-6 … 1e-1} (6 log-spaced values). One sweep
per training set (a 5 % stratified subset, and all of it) covers the whole λ₁ × λ₂ grid: the λ₂ = 0 row
is the L1 study, the λ₁ = 0 column the L2 study, and the members with both penalties come for the price
of a vmapped axis (they fill the elastic-net heatmap in each sweep's plots/). Sparsity is the fraction of
weight-matrix entries with |w| < 1e-3, read from the members' final variables.

Members that share a seed share initialisation and minibatch order, so the λ values of one penalty are
compared paired over seeds (:mod:`jaxmlp.compare`, Holm-corrected; λ = 0 among them): the headline names
the λ values whose test accuracy is not significantly worse than the best. Three seeds (the full
settings) detect only large differences; the summary estimates, from the run's own paired spread, how many
seeds a 1-point difference needs.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from experiments import common, report

NAME = "l1_l2_lambda"
TITLE = "L1 vs L2 penalty strength λ on M1 (784-8-16-10): accuracy and sparsity"
ABOUT = "L1 and L2 λ 1e-6..1e-1 (6 log-spaced) on M1; accuracy and near-zero weights; 5 % subset vs full"

FULL = {
    "model": "M1: 784-8-16-10, ReLU, no dropout",
    "hidden": (8, 16), "optimizer": "adam", "lr": 1e-3, "batch_size": 128,
    "lambdas": [float(f"{v:.10g}") for v in np.geomspace(1e-6, 1e-1, 6)], "seeds": [0, 1, 2],
    "subset_share": 0.05, "subset_epochs": 100, "subset_patience": 10, "epochs": 20, "patience": 5,
    "threshold": 1e-3,
}
QUICK = {"lambdas": [1e-5, 1e-3, 1e-1], "batch_size": 64, "seeds": [0, 1], "subset_share": 0.2, "subset_epochs": 3,
         "subset_patience": 0, "epochs": 2, "patience": 0}
PENALTIES = {"L1": ("l1", "l2"), "L2": ("l2", "l1")}   # name -> (its λ, the other λ held at 0)
POWER_DIFF = 1.0   # accuracy points: the difference whose detection the summary's power estimate is about


def curves(res: Any, sparsity: np.ndarray, penalty: str) -> dict[str, dict[tuple, tuple[float, float, int]]]:
    """Pooled-over-seeds numbers of one penalty's members (the other λ = 0), keyed by (λ,)."""
    mine, other = PENALTIES[penalty]
    where = {other: 0.0}
    out = {f"{m}_{s}": report.pooled(res, [mine], m, s, where)
           for m, s in (("accuracy", "val"), ("accuracy", "test"), ("loss", "test"))}
    out["sparsity"] = report.pool_values(res, 100.0 * sparsity, [mine], where)
    return out


def run(study: common.Study) -> None:
    """Train both grids, measure sparsity, draw the figures and write the tables."""
    s = study.choose(FULL, QUICK)
    grid = [0.0] + s["lambdas"]
    sweeps, sparse = {}, {}
    for label, share, epochs, patience in (("subset", s["subset_share"], s["subset_epochs"], s["subset_patience"]),
                                           ("full", 1.0, s["epochs"], s["patience"])):
        config = study.config(hidden=[s["hidden"]], l1=grid, l2=grid, seed=s["seeds"],
                              optimizer=[s["optimizer"]], lr=[s["lr"]], batch_size=[s["batch_size"]],
                              epochs=epochs, patience=patience, train_fraction=study.fraction(share))
        res = study.sweep(label, config, keep_variables=True)
        sweeps[label] = res
        sparse[label] = np.array([report.sparsity(v, s["threshold"]) for v in res.variables])
    data = {label: {p: curves(res, sparse[label], p) for p in PENALTIES} for label, res in sweeps.items()}
    base = {label: {"test": report.pooled(res, [], "accuracy", "test", {"l1": 0.0, "l2": 0.0})[()],
                    "sparsity": report.pool_values(res, 100.0 * sparse[label], [], {"l1": 0.0, "l2": 0.0})[()]}
            for label, res in sweeps.items()}

    # ---- numbers and tables ----
    n_seeds = len(s["seeds"])
    study.text(
        f"λ₁ and λ₂ each take 0 and {len(s['lambdas'])} log-spaced values; one sweep per training set trains "
        f"the whole {len(grid)} × {len(grid)} grid × {n_seeds} seed(s). The L1 curve is the λ₂ = 0 row, the L2 "
        f"curve the λ₁ = 0 column (λ = 0 is the unpenalised baseline). Sparsity: share of weight-matrix "
        f"entries with |w| < {s['threshold']:g}, in %; accuracies in %; every number is the mean and its 95 % t "
        f"interval over the {n_seeds} seed(s) (one seed: the mean alone, no interval). Which λ values are **not "
        f"significantly worse than the best** on test accuracy comes from paired t tests over the seeds, "
        f"Holm-corrected (`jaxmlp compare RUN --by l1` prints the same).")
    short, lines, same = [], [], {}
    for label, per in data.items():
        study.numbers[label] = {"train_fraction": sweeps[label].config["train_fraction"],
                                "baseline_test_accuracy": base[label]["test"][0],
                                "baseline_sparsity": base[label]["sparsity"][0]}
        for p, c in per.items():
            curve = {k: v for k, v in c["accuracy_val"].items() if k[0] > 0}
            (best,) = report.best_by(curve)
            top = max(s["lambdas"])
            study.numbers[label][p] = {
                "best_lambda": best, "best_test_accuracy": c["accuracy_test"][(best,)][0],
                "test_accuracy": {k[0]: v[0] for k, v in c["accuracy_test"].items()},
                "sparsity": {k[0]: v[0] for k, v in c["sparsity"].items()}}
            short.append([label, p, f"{best:g}", report.pm_ci(c["accuracy_test"][(best,)]),
                          report.pm_ci(c["sparsity"][(best,)], 1), report.pm_ci(c["accuracy_test"][(top,)]),
                          report.pm_ci(c["sparsity"][(top,)], 1)])
            mine, other = PENALTIES[p]
            same[f"{label} {p}"] = report.not_worse(sweeps[label], mine, where={other: 0.0},
                                                    power_diff=POWER_DIFF)
        l1s, l2s = per["L1"]["sparsity"], per["L2"]["sparsity"]
        top = (max(s["lambdas"]),)
        lines.append(f"- **{label}**: no penalty: test {base[label]['test'][0]:.2f} %, sparsity "
                     f"{base[label]['sparsity'][0]:.1f} %. At λ = {top[0]:g}, L1 leaves {l1s[top][0]:.1f} % of "
                     f"weights below {s['threshold']:g} and L2 {l2s[top][0]:.1f} %. On test accuracy, L1: "
                     f"{same[label + ' L1']['statement']}; L2: {same[label + ' L2']['statement']}.")
    study.text("\n".join(lines))
    study.table(["training set", "penalty", "best λ (val)", "test acc (%)", "sparsity (%)",
                 f"test acc at λ={max(s['lambdas']):g}", f"sparsity at λ={max(s['lambdas']):g}"], short,
                title=f"Best λ per penalty (chosen on validation accuracy; mean [95 % CI] over {n_seeds} seed(s))",
                show=True)
    for key, found in same.items():
        report.record_not_worse(study, key, found, f"{key}: every λ against the best on test accuracy")
    for label, per in data.items():
        rows = []
        for lam in grid:
            k = (lam,)
            row = [f"{lam:g}"]
            for p in PENALTIES:
                c = per[p]
                row += [report.pm_ci(c["accuracy_val"][k]), report.pm_ci(c["accuracy_test"][k]),
                        report.pm_ci(c["loss_test"][k], 3), report.pm_ci(c["sparsity"][k], 1)]
            rows.append(row)
        study.table(["λ"] + [f"{p} {h}" for p in PENALTIES
                             for h in ("val acc (%)", "test acc (%)", "test loss", "sparsity (%)")],
                    rows, title=f"Every λ, {label} training set (λ = 0: no penalty; mean [95 % CI] over {n_seeds} seed(s))")

    # ---- figures ----
    from jaxmlp import plots

    colors = {"L1": plots.OKABE_ITO[0], "L2": plots.OKABE_ITO[1]}
    for key, file, ylabel, what in (("accuracy", "accuracy_vs_lambda.png", "accuracy (%)", "Accuracy"),
                                    ("sparsity", "sparsity_vs_lambda.png",
                                     f"weights with |w| < {s['threshold']:g} (%)", "Near-zero weights")):
        fig, axes = report.new_figure(11.0, 4.2, 1, len(sweeps), sharey=True)
        with report.styled():
            for ax, (label, per) in zip(axes[0], data.items()):
                for p, c in per.items():
                    pos = lambda d: {k: v for k, v in d.items() if k[0] > 0}
                    if key == "accuracy":
                        report.errorbar_line(ax, pos(c["accuracy_test"]), f"{p} test", colors[p], "o", bars="ci")
                        report.errorbar_line(ax, pos(c["accuracy_val"]), f"{p} validation", colors[p], "s",
                                             "--", hollow=True, bars="ci")
                    else:
                        report.errorbar_line(ax, pos(c["sparsity"]), p, colors[p], "o", bars="ci")
                ref = base[label]["test" if key == "accuracy" else "sparsity"][0]
                ax.axhline(ref, color="0.35", linestyle=":", linewidth=1.2,
                           label=f"no penalty{' (test)' if key == 'accuracy' else ''}: {ref:.1f}")
                ax.set_xscale("log")
                ax.set_xlabel("penalty strength λ (log scale)")
                ax.set_ylabel(ylabel)
                ax.set_title(f"{label} ({report.percent(sweeps[label].config['train_fraction'])} of the training set)\n"
                             f"mean and 95 % CI over {n_seeds} seed(s)")
                ax.legend(loc="best")
        fig.suptitle(f"{what} vs λ for L1 and L2, M1 784-8-16-10")
        study.figure(fig, file, f"{what} vs penalty strength λ, L1 and L2 on one axis per training set")
    study.link(study.out / "full" / "plots" / "heatmap_l1_l2_test_accuracy.png",
               "Test accuracy over the whole λ₁ × λ₂ grid (full training set)")


if __name__ == "__main__":
    sys.exit(common.study_main(NAME))
