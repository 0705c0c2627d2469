"""The reference studies: their command (listing, bad flags), their helpers, and two quick runs on the
synthetic dataset (``--train-fraction 1`` makes the 600 synthetic images "the whole training set")."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxmlp

from experiments import common, report, l1_vs_l2_weights
from experiments.__main__ import main
from jaxmlp.results import Results

ROOT = Path(__file__).resolve().parents[1]


# ---- the command ------------------------------------------------------------------------------------

def test_listing_names_every_study_once(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in out if line.startswith("  ")]
    assert listed == list(common.STUDIES)


def test_listing_from_the_command_line_and_through_jaxmlp(capsys):
    done = subprocess.run([sys.executable, "-m", "experiments"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    from jaxmlp import cli

    assert cli.main(["experiment"]) == 0
    assert capsys.readouterr().out == done.stdout


@pytest.mark.parametrize("argv, message", [
    (["dropout_sweep", "--bogus"], "unrecognized arguments: --bogus; see 'python -m experiments --help'"),
    (["nope"], "unknown study 'nope'; choose one of: " + ", ".join(common.STUDIES)
     + " (or run 'python -m experiments' to list them)"),
    (["kfold", "--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar' (choose from "
                                      "'fashion_mnist', 'mnist'); see 'python -m experiments --help'"),
    (["kfold", "--all"], "give a study name or --all, not both (got 'kfold' and --all)"),
    (["kfold", "--train-fraction", "0"], "--train-fraction must lie in (0, 1], got 0.0"),
    (["kfold", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["kfold", "--coordinator", "10.0.0.1:8476"], "--num-processes and --process-id missing: --coordinator, "
     "--num-processes and --process-id go together (all three for a run of several processes, none for one)"),
])
def test_bad_flags_print_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == f"experiments: error: {message}\n"


def test_an_output_path_that_is_a_file_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["kfold", "--quick", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a directory" in err
    assert blocker.read_text() == ""


# ---- helpers ---------------------------------------------------------------------------------------

def test_sparsity_counts_weight_matrices_only():
    variables = {"params": {
        "Dense_0": {"kernel": np.array([[0.0, 5e-4], [2e-3, -1e-4]]), "bias": np.zeros(2)},
        "Dense_1": {"kernel": np.array([[1.0], [-0.0009]]), "bias": np.zeros(1)},
    }}
    assert report.sparsity(variables) == pytest.approx(4 / 6)         # biases (all zero) do not count
    assert report.sparsity(variables, layer="Dense_0") == pytest.approx(3 / 4)
    assert report.sparsity(variables, threshold=1e-4) == pytest.approx(1 / 6)  # strict: |-1e-4| is not below


def test_pooling_and_best_choice_by_hand():
    assert report.mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)), 2)
    assert report.mean_std([5.0, math.nan]) == (5.0, 0.0, 1)
    assert report.best_by({(0.1,): (80.0, 1.0, 3), (0.2,): (82.0, 0.5, 3), (0.3,): (82.0, 0.1, 3)}) == (0.2,)
    assert report.best_by({("a",): (1.0, 0, 1), ("b",): (0.5, 0, 1)}, higher=False) == ("b",)
    assert report.pm((81.234, 0.5, 3)) == "81.23 ± 0.50" and report.pm((81.234, 0.0, 1)) == "81.23"


def _members(accuracy: dict[tuple, float]) -> Results:
    """A Results whose members have settings (opt, lr, seed) and the given test accuracies (in %)."""
    members = [{"index": i, "hparams": {"opt": o, "lr": lr, "seed": seed},
                "test": {"accuracy": a / 100, "loss": 1.0}, "val": {"accuracy": a / 100, "loss": 1.0},
                "epochs_run": 1, "best_epoch": 1}
               for i, ((o, lr, seed), a) in enumerate(accuracy.items())]
    return Results({}, members)


def test_not_worse_pairs_relabelled_settings_over_seeds_and_lists_them():
    # adam/0.1 is best; sgd/0.1 trails it by 0.1 points on average, ± 0.4 (not worse); sgd/0.01 by ~10.
    noise = {0: 0.0, 1: 3.0, 2: -2.0, 3: 1.0}
    jitter = {0: 0.3, 1: -0.5, 2: 0.2, 3: -0.4}
    acc = {}
    for seed, e in noise.items():
        acc[("adam", 0.1, seed)] = 80 + e
        acc[("sgd", 0.1, seed)] = 80 + e + jitter[seed]
        acc[("sgd", 0.01, seed)] = 70 + e + 0.2 * seed
    merged = report.relabel([_members(acc)], "setting", lambda hp: f"{hp['opt']}/{hp['lr']:g}")
    assert all(set(m["hparams"]) == {"setting", "seed"} for m in merged.members)
    found = report.not_worse(merged, "setting", power_diff=1.0)
    assert found["best"] == "adam/0.1" and found["values"] == ["adam/0.1", "sgd/0.1"] and found["seeds"] == 4
    assert found["statement"].startswith("not significantly worse than the best (adam/0.1): sgd/0.1 (paired over 4 seeds")
    assert "Holm" in found["table"] and "seed(s) for one comparison" in found["power"]


def test_not_worse_with_one_seed_says_no_test_is_possible():
    found = report.not_worse(_members({("a", 0.1, 0): 80.0, ("a", 0.01, 0): 70.0}), "lr", where={"opt": "a"})
    assert found["values"] is None and found["best"] == 0.1
    assert found["statement"].startswith("one seed: no interval and no test")


def test_paired_difference_over_the_seeds_both_have():
    d = report.paired_difference({0: 5.0, 1: 6.0, 2: 7.0, 9: 0.0}, {0: 1.0, 1: 1.0, 2: 2.0}, "a − b")
    assert d["seeds"] == 3 and d["diff"] == pytest.approx(14 / 3)
    assert d["low"] < d["diff"] < d["high"] and d["statement"].startswith("a − b +4.67 points, 95 % interval")
    assert "one seed: no interval" in report.paired_difference({0: 1.0}, {0: 0.0}, "a − b")["statement"]


def test_comparable_l2_equalises_the_penalties_at_initialisation():
    # Flax initialises Dense kernels with variance 1/fan_in, so Σ|w|/Σw² ≈ Σ n·σ·√(2/π) / Σ n·σ².
    sizes = [(784, 8), (8, 16), (16, 10)]
    sigma = [1 / math.sqrt(a) for a, _ in sizes]
    expected = (sum(a * b * s * math.sqrt(2 / math.pi) for (a, b), s in zip(sizes, sigma))
                / sum(a * b * s * s for (a, b), s in zip(sizes, sigma)))
    l2, ratio = l1_vs_l2_weights.comparable_l2((8, 16), 1e-4)
    assert ratio == pytest.approx(expected, rel=0.1)
    assert l2 == float(f"{1e-4 * ratio:.2g}")


def test_the_verdict_follows_the_numbers():
    text = l1_vs_l2_weights.verdict({"none": 2.0, "L1": 40.0, "L2": 4.0, "L1+L2": 41.0}, 1e-3, 1e-3)
    assert "L1 is the sparser (10.0× L2's share), as the argument predicts" in text
    text = l1_vs_l2_weights.verdict({"none": 2.0, "L1": 3.0, "L2": 4.0, "L1+L2": 4.0}, 1e-3, 1e-3)
    assert "here L2 came out sparser, against the argument" in text


# ---- quick runs on synthetic data --------------------------------------------------------------------

def _links(summary: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", summary)


def test_dropout_sweep_quick_writes_results_figures_and_the_best_rate(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "dropout"
    argv = ["dropout_sweep", "--quick", "--data-dir", str(synthetic_dir), "--train-fraction", "1", "--quiet",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Best dropout rate per training set" in printed
    summary = (out / "summary.md").read_text()
    doc = json.loads((out / "summary.json").read_text())
    for label, fraction in (("subset", 0.2), ("full", 1.0)):
        res = Results.read(out / label)
        assert res.config["train_fraction"] == fraction
        assert len(res.members) == 6 * 2                     # quick: 6 rates × 2 seeds
        assert (out / label / "plots" / "learning_curves.png").is_file()
        # The best rate by hand: highest mean validation accuracy over seeds (first of equals).
        by_rate: dict[float, list[float]] = {}
        for m in res.members:
            by_rate.setdefault(m["hparams"]["dropout"], []).append(100 * m["val"]["accuracy"])
        best = max(sorted(by_rate), key=lambda r: np.mean(by_rate[r]))
        assert doc["numbers"][label]["best_rate"] == best
        assert f"**{label}**: best rate **{best:g}**" in summary
    links = _links(summary)
    assert {"accuracy_vs_rate.png", "loss_vs_rate.png", "gap_vs_rate.png"} <= set(links)
    assert all((out / link).is_file() for link in links)
    assert "- mode: quick" in summary and f"jaxmlp {jaxmlp.__version__}" in summary and "- device: " in summary


def test_l1_vs_l2_weights_quick_states_the_measured_sparser_penalty(synthetic_dir, tmp_path):
    out = tmp_path / "weights"
    argv = ["l1_vs_l2_weights", "--quick", "--data-dir", str(synthetic_dir), "--train-fraction", "1",
            "--quiet", "--out", str(out)]
    assert main(argv) == 0
    doc = json.loads((out / "summary.json").read_text())
    numbers = doc["numbers"]
    res = Results.read(out / "sweep")
    assert sorted((m["hparams"]["l1"], m["hparams"]["l2"], m["hparams"]["seed"]) for m in res.members) == \
        sorted((a, b, seed) for a in (0.0, numbers["l1"]) for b in (0.0, numbers["l2"]) for seed in (0, 1))
    assert numbers["l1_minus_l2_sparsity"]["seeds"] == 2   # quick: 2 seeds, so the paired interval exists
    first = numbers["first_layer_sparsity"]
    summary = (out / "summary.md").read_text()
    assert f"L1 left {first['L1']:.1f} % of the first layer's weights" in summary
    expected = "L1" if first["L1"] > first["L2"] else "L2" if first["L2"] > first["L1"] else "neither"
    assert numbers["sparser"] == expected
    assert all((out / link).is_file() for link in _links(summary))


def test_the_verdict_explains_l2_zeros_under_adam_only_when_measured():
    numbers = {"none": 0.9, "L1": 29.4, "L2": 14.1, "L1+L2": 28.2}
    text = l1_vs_l2_weights.verdict(numbers, 1e-3, 1e-3, blank=13.4)
    assert "L2 still leaves more near-zero weights than no penalty (14.1 % vs 0.9 %)" in text
    assert "13.4 % of pixels are blank in at least 90 % of the training images" in text
    assert "L2 still leaves" not in l1_vs_l2_weights.verdict({**numbers, "L2": 1.5}, 1e-3, 1e-3, blank=13.4)


def test_blank_pixels_by_hand(tmp_path):
    from jaxmlp.idx import write_idx

    images = np.zeros((20, 28 * 28), np.uint8)
    images[:, :100] = 200          # always lit
    images[:1, 100:150] = 200      # lit in 1 of 20 images: blank in 95 % of them, counts
    images[:3, 150:200] = 200      # lit in 3 of 20: blank in 85 %, does not count
    labels = (np.arange(20) % 10).astype(np.uint8)
    for split, n in (("train", 20), ("t10k", 10)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images[:n].reshape(n, 28, 28))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels[:n])
    expected = 100.0 * (50 + 784 - 200) / 784
    assert l1_vs_l2_weights.blank_pixels("fashion_mnist", str(tmp_path)) == pytest.approx(expected)
