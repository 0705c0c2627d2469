"""Study 3: what L1 and L2 do to the weights themselves — first-layer histograms and sparsity.

M1 (784-8-16-10, ReLU) trains with no penalty, with L1 (λ₁), with L2 (λ₂) and with both, as one sweep
(λ₁ ∈ {0, λ₁} × λ₂ ∈ {0, λ₂} × seeds). "Comparable strength" is defined on the initial weights w₀: λ₂ is
chosen so that both penalty terms are equal there, λ₁·Σ|w₀| = λ₂·Σw₀², i.e. λ₂ = λ₁·Σ|w₀| / Σw₀²
(computed from an initialisation of M1, not assumed). The summary states which penalty left more
near-zero weights, from the measured numbers: the L1 − L2 difference in first-layer sparsity paired over
seeds, with its 95 % interval, and which variants' test accuracy is not significantly worse than the best
(:mod:`jaxmlp.compare`, paired over seeds, Holm-corrected). Three seeds (the full settings) suffice for the
sparsity difference, which is large; for accuracy the summary estimates the seeds a 1-point difference needs.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from experiments import common, report

NAME = "l1_vs_l2_weights"
TITLE = "L1 vs L2 on M1's first-layer weights: histograms and sparsity at comparable strength"
ABOUT = "first-layer weight histograms of M1 with no penalty, L1 and L2 at comparable strength; sparsity"

FULL = {
    "model": "M1: 784-8-16-10, ReLU, no dropout",
    "hidden": (8, 16), "optimizer": "adam", "lr": 1e-3, "batch_size": 128,
    "l1": 1e-4, "seeds": [0, 1, 2], "epochs": 20, "patience": 5, "threshold": 1e-3,
}
QUICK = {"seeds": [0, 1], "epochs": 2, "patience": 0}
VARIANTS = ("none", "L1", "L2", "L1+L2")
POWER_DIFF = 1.0   # accuracy points: the difference whose detection the summary's power estimate is about


def comparable_l2(hidden: tuple[int, ...], l1: float) -> tuple[float, float]:
    """(λ₂, Σ|w₀|/Σw₀²): the L2 strength whose penalty equals the L1 one on M1's initial weight matrices
    (rounded to two significant digits), and the ratio it came from."""
    import jax

    from jaxmlp import models

    variables = models.init(models.MLP(hidden=hidden), jax.random.key(0), (28, 28))
    kernels = [np.asarray(p["kernel"], np.float64) for p in variables["params"].values()]
    ratio = sum(np.abs(k).sum() for k in kernels) / sum(np.square(k).sum() for k in kernels)
    return float(f"{l1 * ratio:.2g}"), float(ratio)


def variant(hp: dict[str, Any]) -> str:
    """A member's penalty variant from its settings: none, L1, L2 or L1+L2."""
    return {(False, False): "none", (True, False): "L1", (False, True): "L2", (True, True): "L1+L2"}[
        (hp["l1"] > 0, hp["l2"] > 0)]


def blank_pixels(dataset: str, data_dir: str | None, share: float = 0.9) -> float:
    """Percentage of pixels that are 0 in at least `share` of the training images."""
    from jaxmlp import data

    images = data.load(dataset, data_dir).train_images.reshape(-1, 28 * 28)
    return 100.0 * float(((images == 0).mean(axis=0) >= share).mean())


def verdict(first: dict[str, float], threshold: float, lr: float, blank: float | None = None) -> str:
    """The explanation, checked against the measured first-layer sparsity (% of |w| < threshold).
    `blank`: the percentage of nearly always blank pixels, whose weights get almost no data gradient."""
    l1, l2, none = first["L1"], first["L2"], first["none"]
    why = (
        "**Why L1 zeroes weights and L2 only shrinks them.** The L1 term λ₁·Σ|w| has the subgradient "
        "λ₁·sign(w): its size does not depend on |w|, so a weight keeps being pushed toward 0 by the same "
        "amount however small it already is, and it stays there unless the data gradient on it is larger "
        "than λ₁. Weights the data barely needs therefore end at (or, with Adam's normalised steps, within "
        f"about one step, lr = {lr:g}, of) zero — hence the threshold |w| < {threshold:g} rather than w = 0. "
        "The L2 term λ₂·Σw² has the gradient 2λ₂·w, which vanishes as w → 0: it shrinks each weight in "
        "proportion to its size, so weights get smaller but the push fades before they reach zero.")
    if l1 > l2:
        factor = f"{l1 / l2:.1f}×" if l2 > 0 else "infinitely"
        check = (f"**Measured:** L1 left {l1:.1f} % of the first layer's weights below {threshold:g}, L2 "
                 f"{l2:.1f} % and no penalty {none:.1f} %: L1 is the sparser ({factor} L2's share), as the "
                 "argument predicts.")
    elif l2 > l1:
        check = (f"**Measured:** L1 left {l1:.1f} % of the first layer's weights below {threshold:g}, L2 "
                 f"{l2:.1f} % and no penalty {none:.1f} %: here L2 came out sparser, against the argument — "
                 "typically a sign that training was too short for the L1 push to act (e.g. --quick).")
    else:
        check = (f"**Measured:** L1 and L2 both left {l1:.1f} % of the first layer's weights below {threshold:g} "
                 f"(no penalty: {none:.1f} %): no difference at these settings.")
    out = why + "\n\n" + check
    if l2 > 2 * none and l2 - none > 1.0:
        # Adam divides each weight's gradient by its own running scale: where the penalty is nearly the
        # only gradient, the step is about lr whatever its size, so L2 then drives weights to 0 as well.
        out += (f" L2 still leaves more near-zero weights than no penalty ({l2:.1f} % vs {none:.1f} %): Adam "
                "rescales each weight's gradient by its own running size, so a weight whose data gradient is "
                "almost nil moves by about lr per step under L2 too and reaches 0 like under L1")
        out += (f" — plausibly the weights of rarely lit pixels ({blank:.1f} % of pixels are blank in at least "
                "90 % of the training images)." if blank is not None else ".")
    return out


def sparsity_gap(res: Any, kinds: list[str], first: np.ndarray) -> dict[str, Any]:
    """L1 minus L2 first-layer sparsity (percentage points), paired over seeds, with its 95 % interval."""
    by_seed = {k: {m["hparams"]["seed"]: v for m, kind, v in zip(res.members, kinds, first) if kind == k}
               for k in ("L1", "L2")}
    return report.paired_difference(by_seed["L1"], by_seed["L2"], "L1 − L2 first-layer sparsity", 1)


def run(study: common.Study) -> None:
    """Train the four variants, then draw histograms and |w| distributions and write the summary."""
    s = study.choose(FULL, QUICK)
    l2, ratio = comparable_l2(s["hidden"], s["l1"])
    study.settings["l2"] = l2
    study.settings["comparable strength"] = (f"λ₂ = λ₁·Σ|w₀|/Σw₀² = {s['l1']:g} × {ratio:.1f} ≈ {l2:g} "
                                             "(equal penalties at M1's initial weights)")
    config = study.config(hidden=[s["hidden"]], l1=[0.0, s["l1"]], l2=[0.0, l2], seed=s["seeds"],
                          optimizer=[s["optimizer"]], lr=[s["lr"]], batch_size=[s["batch_size"]],
                          epochs=s["epochs"], patience=s["patience"], train_fraction=study.fraction())
    res = study.sweep("sweep", config, keep_variables=True)
    th = s["threshold"]
    kinds = [variant(m["hparams"]) for m in res.members]
    first_layer = [np.asarray(v["params"]["Dense_0"]["kernel"]).ravel() for v in res.variables]

    per_member = {
        "first": 100.0 * np.array([report.sparsity(v, th, "Dense_0") for v in res.variables]),
        "all": 100.0 * np.array([report.sparsity(v, th) for v in res.variables]),
        "zeros": 100.0 * np.array([float((w == 0).mean()) for w in first_layer]),
        "median": np.array([float(np.median(np.abs(w))) for w in first_layer]),
    }
    stats: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name, values in per_member.items():
        pooled = {}
        for k in VARIANTS:
            pooled[k] = report.mean_std([v for v, kind in zip(values, kinds) if kind == k])
        stats[name] = pooled
    acc = report.mean_std
    test = {k: acc([100 * m["test"]["accuracy"] for m, kind in zip(res.members, kinds) if kind == k])
            for k in VARIANTS}
    lam = {"none": (0.0, 0.0), "L1": (s["l1"], 0.0), "L2": (0.0, l2), "L1+L2": (s["l1"], l2)}
    rows = [[k, f"{lam[k][0]:g}", f"{lam[k][1]:g}", report.pm_ci(test[k]), report.pm_ci(stats["first"][k], 1),
             report.pm_ci(stats["all"][k], 1), report.pm_ci(stats["zeros"][k], 2),
             report.pm_ci(stats["median"][k], 4)]
            for k in VARIANTS]
    first = {k: stats["first"][k][0] for k in VARIANTS}
    study.numbers.update({"l1": s["l1"], "l2": l2, "ratio": ratio, "threshold": th,
                          "first_layer_sparsity": first,
                          "all_layers_sparsity": {k: stats["all"][k][0] for k in VARIANTS},
                          "test_accuracy": {k: test[k][0] for k in VARIANTS},
                          "sparser": "L1" if first["L1"] > first["L2"] else "L2" if first["L2"] > first["L1"]
                          else "neither"})
    n = len(s["seeds"])
    study.text(f"Four variants × {n} seed(s) in one sweep; λ₁ = {s['l1']:g}, λ₂ = {l2:g} (equal penalties at the "
               f"initial weights: Σ|w₀|/Σw₀² = {ratio:.1f}). Sparsity is the share (%) of weights with "
               f"|w| < {th:g}; every number is the mean and its 95 % t interval over the {n} seed(s) (one seed: "
               "the mean alone).")
    study.table(["variant", "λ₁", "λ₂", "test acc (%)", f"first layer |w|<{th:g} (%)",
                 f"all layers |w|<{th:g} (%)", "first layer w = 0 (%)", "median |w| (first layer)"],
                rows, title=f"Weights after training (mean [95 % CI] over {n} seed(s))", show=True)
    blank = blank_pixels(study.opts.dataset, study.opts.data_dir)
    study.numbers["blank_pixels"] = blank
    study.text(verdict(first, th, s["lr"], blank))
    study.numbers["l1_minus_l2_sparsity"] = gap = sparsity_gap(res, kinds, per_member["first"])
    found = report.not_worse(report.relabel([res], "penalty", variant), "penalty", power_diff=POWER_DIFF)
    study.text(f"**Paired over seeds:** {gap['statement']}. On test accuracy, {found['statement']}.")
    study.printed.append(f"first-layer sparsity: {gap['statement']}.")
    report.record_not_worse(study, "penalty", found, "Every variant against the best on test accuracy")

    # ---- figures: histograms of seed-0 members, and the distribution of |w| ----
    from jaxmlp import plots

    seed0 = {variant(m["hparams"]): i for i, m in enumerate(res.members) if m["hparams"]["seed"] == s["seeds"][0]}
    colors = dict(zip(VARIANTS, plots.OKABE_ITO))
    everything = np.concatenate([first_layer[i] for i in seed0.values()])
    edge = float(np.quantile(np.abs(everything), 0.999)) or 1.0
    bins = np.linspace(-edge, edge, 81)
    fig, axes = report.new_figure(9.0, 6.0, 2, 2, sharex=True, sharey=True)
    with report.styled():
        for ax, k in zip(axes.flat, VARIANTS):
            w = first_layer[seed0[k]]
            ax.hist(np.clip(w, -edge, edge), bins=bins, color=colors[k], alpha=0.85)
            ax.set_yscale("log")
            ax.set_title(f"{k}: λ₁ = {lam[k][0]:g}, λ₂ = {lam[k][1]:g}\n"
                         f"{100 * float((np.abs(w) < th).mean()):.1f} % of weights with |w| < {th:g}")
        for ax in axes[1]:
            ax.set_xlabel("first-layer weight w (clipped to the 99.9th percentile of |w|)")
        for ax in axes[:, 0]:
            ax.set_ylabel("number of weights (log scale)")
    fig.suptitle(f"First-layer weights of M1 (784×8 = {first_layer[0].size} weights), seed {s['seeds'][0]}")
    study.figure(fig, "first_layer_histograms.png", "Histograms of the first layer's weights per penalty")

    fig, axes = report.new_figure(6.0, 4.0)
    ax = axes[0, 0]
    with report.styled():
        grid = np.geomspace(1e-7, 1.0, 200)
        for k in VARIANTS:
            a = np.sort(np.abs(first_layer[seed0[k]]))
            ax.plot(grid, 100.0 * np.searchsorted(a, grid) / a.size, color=colors[k], label=k)
        ax.axvline(th, color="0.35", linestyle=":", linewidth=1.2, label=f"threshold {th:g}")
        ax.set_xscale("log")
        ax.set_xlabel("weight magnitude t (log scale)")
        ax.set_ylabel("first-layer weights with |w| < t (%)")
        ax.set_title(f"Distribution of |w| in M1's first layer, seed {s['seeds'][0]}")
        ax.legend(loc="upper left")
    study.figure(fig, "abs_weight_cdf.png", "Share of first-layer weights below each magnitude")


if __name__ == "__main__":
    sys.exit(common.study_main(NAME))
