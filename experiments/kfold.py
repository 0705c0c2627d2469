"""Study 6: 5-fold cross-validation of 784-128-64-10 (dropout 0.3, RMSprop), then a model on all the data.

The five folds are one vmapped axis of a single sweep (``SweepConfig(folds=5)``): each member trains on
four fifths of the training set and validates on the fifth. The estimate is the mean ± std of the fold
validation accuracies; a model retrained for the same number of epochs on all training data (2 % held
out only to log validation curves) then gives the test accuracy.
"""

from __future__ import annotations

import sys

import numpy as np

from experiments import common, report

NAME = "kfold"
TITLE = "5-fold cross-validation of 784-128-64-10 (dropout 0.3, RMSprop) and a model retrained on all data"
ABOUT = "5-fold CV of 784-128-64-10 dropout 0.3 rmsprop (folds vmapped); mean ± std; retrained test accuracy"

FULL = {"hidden": (128, 64), "dropout": 0.3, "optimizer": "rmsprop", "lr": 1e-3, "batch_size": 128,
        "folds": 5, "epochs": 20, "seed": 0, "retrain_val_fraction": 0.02}
QUICK = {"epochs": 2}


def run(study: common.Study) -> None:
    """Cross-validate, retrain, and summarise folds against the retrained model."""
    s = study.choose(FULL, QUICK)
    common_settings = dict(hidden=[s["hidden"]], dropout=[s["dropout"]], optimizer=[s["optimizer"]],
                           lr=[s["lr"]], batch_size=[s["batch_size"]], seed=[s["seed"]], epochs=s["epochs"],
                           train_fraction=study.fraction())
    cv = study.sweep("cv", study.config(**common_settings, folds=s["folds"]))
    final = study.sweep("retrained", study.config(**common_settings, val_fraction=s["retrain_val_fraction"]))

    folds = sorted(cv.members, key=lambda m: m["hparams"]["fold"])
    val = [100 * m["val"]["accuracy"] for m in folds]
    fold_test = [100 * m["test"]["accuracy"] for m in folds]
    cv_val, cv_test = report.mean_std(val), report.mean_std(fold_test)
    retrained = 100 * final.members[0]["test"]["accuracy"]
    study.numbers.update({"fold_val_accuracy": val, "cv_mean": cv_val[0], "cv_std": cv_val[1],
                          "fold_test_accuracy": fold_test, "retrained_test_accuracy": retrained})
    study.text(
        f"{s['folds']} folds trained at once (one vmapped axis), {s['epochs']} epochs each, no early stopping. "
        f"Cross-validated accuracy: **{report.pm(cv_val)} %** (mean ± std over folds, validation). The model "
        f"retrained on all training data for the same {s['epochs']} epochs reaches **{retrained:.2f} %** "
        f"test accuracy (the fold models: {report.pm(cv_test)} % on test).")
    rows = [[str(m["hparams"]["fold"]), f"{v:.2f}", f"{m['val']['loss']:.4f}", f"{t:.2f}", str(m["best_epoch"])]
            for m, v, t in zip(folds, val, fold_test)]
    rows.append(["mean ± std", report.pm(cv_val), report.pm(report.mean_std([m["val"]["loss"] for m in folds]), 4),
                 report.pm(cv_test), ""])
    study.table(["fold", "val acc (%)", "val loss", "test acc (%)", "epoch of lowest val loss"], rows,
                title="Cross-validation folds")
    study.table(["estimate", "accuracy (%)"],
                [["5-fold CV (validation), mean ± std", report.pm(cv_val)],
                 ["retrained on all training data (test)", f"{retrained:.2f}"]],
                title="Cross-validated vs retrained", show=True)

    from jaxmlp import plots

    fig, axes = report.new_figure(6.0, 4.0)
    ax = axes[0, 0]
    with report.styled():
        x = np.arange(len(folds))
        # Markers, not bars: the axis does not start at 0, and bars would exaggerate the differences.
        ax.plot(x - 0.08, val, "s", color=plots.OKABE_ITO[0], markersize=8, label="fold validation accuracy")
        ax.plot(x + 0.08, fold_test, "o", color=plots.OKABE_ITO[2], markersize=7,
                markerfacecolor="white", markeredgewidth=1.8, label="fold model, test accuracy")
        ax.axhline(cv_val[0], color=plots.OKABE_ITO[0], linestyle="--", linewidth=1.2,
                   label=f"CV mean {cv_val[0]:.2f} ± {cv_val[1]:.2f}")
        ax.axhspan(cv_val[0] - cv_val[1], cv_val[0] + cv_val[1], color=plots.OKABE_ITO[0], alpha=0.12)
        ax.axhline(retrained, color=plots.OKABE_ITO[1], linewidth=1.5, label=f"retrained, test {retrained:.2f}")
        low = min(min(val), min(fold_test), retrained)
        high = max(max(val), max(fold_test), retrained)
        pad = max(1.0, 0.5 * (high - low))
        ax.set_ylim(low - pad, high + pad)
        ax.set_xticks(x, [str(m["hparams"]["fold"]) for m in folds])
        ax.set_xlabel("cross-validation fold")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{s['folds']}-fold CV of 784-128-64-10, dropout {s['dropout']:g}, {s['optimizer']}, "
                     f"{s['epochs']} epochs")
        ax.set_xlim(-0.5, len(folds) - 0.5)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    study.figure(fig, "folds.png", "Validation accuracy per fold, CV mean ± std, and the retrained model's test accuracy")
    study.link(study.out / "cv" / "plots" / "learning_curves.png", "Learning curves of the five folds")


if __name__ == "__main__":
    sys.exit(common.study_main(NAME))
