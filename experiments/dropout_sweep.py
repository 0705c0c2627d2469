"""Study 1: how the dropout rate changes a tiny MLP's accuracy and loss, with little and with plenty of data.

M1 is 784-8-16-10 with ReLU, an L1 penalty λ = 1e-5 on its weight matrices, and dropout after each hidden
layer. The 22 rates (0.01 … 0.99, evenly spaced) × 10 seeds train as one vmapped sweep per training set:
a 5 % stratified subset and the full training set. Members that share a seed share initialisation,
minibatch order and the uniform draws behind their dropout masks, so the rates are compared on common
random numbers: seeds give the 95 % intervals and pair the comparisons (:mod:`jaxmlp.compare`), and the
headline names the rates not significantly worse than the best.

Why 10 seeds: paired over 5 seeds, two rates of this model differed by 4.3 points with a 95 % interval
of 1.8–6.8 (issue 14), a spread of paired differences of about 2 points; with that spread 10 seeds
detect a 2-point difference with 80 % power in one two-sided comparison at 5 %
(``jaxmlp.stats.seeds_needed(2, 2) == 10``), where 3 seeds detect only differences of about 7 points.
The summary repeats the estimate from the run's own paired spread.
"""

from __future__ import annotations

import sys

import numpy as np

from experiments import common, report

NAME = "dropout_sweep"
TITLE = "Dropout rate on M1 (784-8-16-10): a 5 % subset vs the full training set"
ABOUT = ("dropout 0.01-0.99 (22 rates) on M1 784-8-16-10 with L1 1e-5; 5 % subset vs full data; 10 seeds, "
         "rates paired over seeds")
POWER_DIFF = 2.0   # accuracy points: the difference whose detection the summary's power estimate is about


def rates(n: int) -> list[float]:
    """`n` evenly spaced rates from 0.01 to 0.99, rounded as ``--dropout 0.01:0.99:n`` rounds them."""
    return [float(f"{v:.10g}") for v in np.linspace(0.01, 0.99, n)]


FULL = {
    "model": "M1: 784-8-16-10, ReLU, dropout after each hidden layer",
    "hidden": (8, 16), "l1": 1e-5, "optimizer": "adam", "lr": 1e-3, "batch_size": 128,
    "dropout": rates(22), "seeds": list(range(10)),
    # The subset sees 20× fewer samples per epoch: it gets more epochs (and patience) to converge.
    # Measured here (2 cores, shared) with 3 seeds: about 20 s for the subset sweep and 1.5 s an epoch for
    # the full one; members grow 3.3× with 10 seeds.
    "subset_share": 0.05, "subset_epochs": 150, "subset_patience": 10,
    "epochs": 30, "patience": 5,
}
QUICK = {"dropout": rates(6), "batch_size": 64, "seeds": [0, 1], "subset_share": 0.2, "subset_epochs": 3, "subset_patience": 0,
         "epochs": 2, "patience": 0}


def run(study: common.Study) -> None:
    """Train both sweeps, then draw the figures and write the tables of the summary."""
    s = study.choose(FULL, QUICK)
    sweeps = {}
    for label, share, epochs, patience in (("subset", s["subset_share"], s["subset_epochs"], s["subset_patience"]),
                                           ("full", 1.0, s["epochs"], s["patience"])):
        config = study.config(hidden=[s["hidden"]], l1=[s["l1"]], dropout=s["dropout"], seed=s["seeds"],
                              optimizer=[s["optimizer"]], lr=[s["lr"]], batch_size=[s["batch_size"]],
                              epochs=epochs, patience=patience, train_fraction=study.fraction(share))
        sweeps[label] = study.sweep(label, config)
    names = {label: f"{label} ({report.percent(res.config['train_fraction'])} of the training set)"
             for label, res in sweeps.items()}

    # ---- numbers: pooled over seeds, best rate chosen on validation accuracy ----
    stats = {label: {(metric, split): report.pooled(res, ["dropout"], metric, split)
                     for metric, split in (("accuracy", "val"), ("accuracy", "test"), ("loss", "val"),
                                           ("loss", "test"), ("accuracy_gap", "test"))}
             for label, res in sweeps.items()}
    summary_rows, numbers = [], {}
    for label, st in stats.items():
        val, test = st["accuracy", "val"], st["accuracy", "test"]
        (best,) = report.best_by(val)
        lo, hi = min(test), max(test)
        numbers[label] = {"train_fraction": sweeps[label].config["train_fraction"], "best_rate": best,
                          "best_val_accuracy": val[(best,)][0], "best_test_accuracy": test[(best,)][0],
                          "test_accuracy_by_rate": {r: test[(r,)][0] for (r,) in test}}
        summary_rows.append([label, report.percent(sweeps[label].config["train_fraction"]), f"{best:g}",
                             report.pm_ci(val[(best,)]), report.pm_ci(test[(best,)]),
                             f"{lo[0]:g}: {report.pm_ci(test[lo])}", f"{hi[0]:g}: {report.pm_ci(test[hi])}"])
    study.numbers.update(numbers)
    n_seeds = len(s["seeds"])
    comparisons, comparison_blocks = _comparisons(study, sweeps, n_seeds)
    study.text(
        f"{len(s['dropout'])} dropout rates × {n_seeds} seeds on each training set, every member trained at "
        f"once in one vmapped sweep per training set. The **best rate** is the one with the highest mean "
        f"validation accuracy over the seeds; its test accuracy is reported alongside (mean and 95 % t "
        f"interval over {n_seeds} seeds, in %). Which rates are **not significantly worse than the best** on test accuracy "
        f"comes from paired t tests over the {n_seeds} seeds, Holm-corrected (`jaxmlp compare RUN --by "
        f"dropout` prints the same). Training accuracy is measured during each epoch with dropout active, "
        "so the train − validation gap can be negative at high rates.")
    study.text("\n".join(
        f"- **{label}**: best rate **{n['best_rate']:g}**, validation accuracy {n['best_val_accuracy']:.2f} %, "
        f"test accuracy {n['best_test_accuracy']:.2f} %; the highest rate ({max(s['dropout']):g}) reaches "
        f"{n['test_accuracy_by_rate'][max(s['dropout'])]:.2f} % on test; on test accuracy, {comparisons[label]}."
        for label, n in numbers.items()))
    study.table(["training set", "share", "best rate", "val acc (%)", "test acc (%)",
                 "lowest rate: test acc", "highest rate: test acc"], summary_rows,
                title="Best dropout rate per training set", show=True)
    for block in comparison_blocks:
        study.text(block)

    per_rate = []
    for r in s["dropout"]:
        row = [f"{r:.3g}"]
        for label in sweeps:
            st = stats[label]
            row += [report.pm_ci(st["accuracy", "val"][(r,)]), report.pm_ci(st["accuracy", "test"][(r,)]),
                    report.pm_ci(st["loss", "test"][(r,)], 3), report.pm_ci(st["accuracy_gap", "test"][(r,)])]
        per_rate.append(row)
    headers = ["rate"] + [f"{label} {h}" for label in sweeps
                          for h in ("val acc (%)", "test acc (%)", "test loss", "train−val gap (pp)")]
    study.table(headers, per_rate, title=f"Every rate (mean [95 % CI] over {n_seeds} seeds)")

    # ---- figures ----
    from jaxmlp import plots

    for metric, file, what in (("accuracy", "accuracy_vs_rate.png", "Accuracy"),
                               ("loss", "loss_vs_rate.png", "Cross-entropy loss")):
        fig, axes = report.new_figure(11.0, 4.2, 1, len(sweeps))
        for ax, (label, res) in zip(axes[0], sweeps.items()):
            plots.metric_vs_param(res, "dropout", metric, ax=ax)
            ax.set_title(f"{names[label]}\nmean and 95 % CI over {n_seeds} seeds")
        fig.suptitle(f"{what} (validation and test) vs dropout rate, M1 784-8-16-10, L1 λ = {s['l1']:g}")
        study.figure(fig, file, f"{what} vs dropout rate on each training set (error bars: 95 % CI over seeds)")

    fig, axes = report.new_figure(6.0, 4.0)
    ax = axes[0, 0]
    with report.styled():
        for (label, st), color, marker in zip(stats.items(), plots.OKABE_ITO, "os"):
            report.errorbar_line(ax, st["accuracy_gap", "test"], names[label], color, marker, bars="ci")
        ax.axhline(0.0, color="0.4", linewidth=0.8, zorder=0)
        ax.set_xlabel("dropout rate (fraction of hidden units dropped)")
        ax.set_ylabel("train − validation accuracy (% points)")
        ax.set_title(f"Generalisation gap vs dropout rate (at the epoch tested)\nmean and 95 % CI over {n_seeds} seeds")
        ax.legend(loc="best")
    study.figure(fig, "gap_vs_rate.png", "Train − validation accuracy gap vs dropout rate")

    for label in sweeps:
        study.link(study.out / label / "plots" / "learning_curves.png",
                   f"Learning curves on the {label} training set, coloured by dropout rate")


def _comparisons(study: common.Study, sweeps: dict, n_seeds: int) -> tuple[dict[str, str], list[str]]:
    """Per training set, the sentence naming the rates not significantly worse than the best on test
    accuracy (paired over seeds, Holm-corrected), as ``jaxmlp compare`` writes it; the tables and a power
    estimate go into the summary, the set into summary.json."""
    from jaxmlp.compare import comparison, format_comparison, power_text, sentence

    sentences, blocks = {}, []
    for label, res in sweeps.items():
        comp = comparison(res, "dropout", metric="accuracy", split="test")
        sentences[label] = sentence(comp)
        power = power_text(comp, POWER_DIFF)
        study.numbers.setdefault("not_worse_than_best", {})[label] = {
            "best_test_rate": comp.reference, "rates": comp.not_worse(), "seeds": n_seeds,
            "statement": sentences[label], "power": power}
        blocks.append(f"**{label}: every rate against the best on test accuracy**; {power}.\n\n```\n"
                   f"{format_comparison(comp)}\n```")
        study.printed.append(f"{label}: {sentences[label]}.")
    return sentences, blocks


if __name__ == "__main__":
    sys.exit(common.study_main(NAME))
