"""jaxmlp.compare and ``jaxmlp compare`` on hand-written run directories with a known effect and a known
null (no training)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

import jaxmlp
from jaxmlp import stats
from jaxmlp.cli import main
from jaxmlp.compare import comparison, format_comparison, values_text
from jaxmlp.errors import UsageError

# True test accuracy (in %) of each rate: 0.1 and 0.3 are equal (the null), 0.5 is 4 points worse,
# 0.7 is 20 points worse.
TRUE = {0.1: 85.0, 0.3: 85.0, 0.5: 81.0, 0.7: 65.0}


def write_run(out: Path, true: dict = TRUE, seeds: int = 6, folds: int = 0, noise: float = 1.0,
              seed_spread: float = 8.0, rng_seed: int = 0) -> Path:
    """results.json of a dropout × seed (× fold) sweep: each seed (and fold) shifts every rate alike,
    as common random numbers do, and each member adds its own noise."""
    rng = np.random.default_rng(rng_seed)
    streams = [(s, f) for s in range(seeds) for f in (range(folds) if folds else [None])]
    shift = {stream: rng.normal(0.0, seed_spread) for stream in streams}
    members = []
    for rate, mean in true.items():
        for stream in streams:
            acc = (mean + shift[stream] + rng.normal(0.0, noise)) / 100
            hp = {"hidden": [8, 16], "dropout": rate, "seed": stream[0]}
            if folds:
                hp["fold"] = stream[1]
            members.append({"index": len(members), "hparams": hp, "best_epoch": 2, "epochs_run": 2,
                            "stopped_early": False, "val": {"loss": 1 - acc, "accuracy": acc},
                            "test": {"loss": 1 - acc, "accuracy": acc}})
    out.mkdir(parents=True, exist_ok=True)
    config = {"epochs": 2, "patience": 0, "folds": folds}
    (out / "results.json").write_text(json.dumps({"config": config, "members": members}))
    return out


def _acc(run: Path, rate: float) -> dict:
    members = json.loads((run / "results.json").read_text())["members"]
    return {(m["hparams"]["seed"], m["hparams"].get("fold")): 100 * m["test"]["accuracy"]
            for m in members if m["hparams"]["dropout"] == rate}


def test_known_effect_is_found_and_the_null_is_not(tmp_path):
    run = write_run(tmp_path / "run")
    comp = comparison(run, "dropout")
    rows = {r["value"]: r for r in comp.rows}
    assert comp.reference in (0.1, 0.3) and comp.reference_kind == "best"
    other = 0.3 if comp.reference == 0.1 else 0.1
    assert rows[other]["not_worse"] and rows[other]["p_holm"] > 0.05        # the null
    assert not rows[0.5]["not_worse"] and not rows[0.7]["not_worse"]        # the effects
    # The paired interval covers the true difference of 0.5 to the best (4 points, both being 85 - x).
    assert rows[0.5]["diff_low"] < -4.0 < rows[0.5]["diff_high"]
    assert rows[0.5]["diff_high"] - rows[0.5]["diff_low"] < 4.0             # paired: the 8-point seed spread cancels
    assert comp.not_worse() == sorted([0.1, 0.3])
    assert comp.pairing == "6 seeds" and comp.excluded == 0
    # Each p-value is scipy's ttest_rel on the pairs; Holm by hand over the three comparisons.
    ref = _acc(run, comp.reference)
    raw = {}
    for rate in (other, 0.5, 0.7):
        a = _acc(run, rate)
        raw[rate] = st.ttest_rel([a[k] for k in sorted(a)], [ref[k] for k in sorted(a)]).pvalue
        assert rows[rate]["p"] == pytest.approx(raw[rate])
    order = sorted(raw, key=raw.get)
    holm = {r: min(1.0, max((3 - j) * raw[order[j]] for j in range(order.index(r) + 1))) for r in raw}
    for rate in raw:
        assert rows[rate]["p_holm"] == pytest.approx(holm[rate])
    assert math.isnan(rows[comp.reference]["p"]) and rows[comp.reference]["diff"] == 0.0
    # The mean interval is the t interval over 6 seeds.
    ci = stats.mean_interval(list(_acc(run, 0.7).values()))
    assert (rows[0.7]["ci_low"], rows[0.7]["ci_high"], rows[0.7]["n"]) == (ci.low, ci.high, 6)


def test_the_sentence_and_the_table(tmp_path):
    comp = comparison(write_run(tmp_path / "run"), "dropout")
    text = format_comparison(comp)
    assert text.endswith("rates 0.1–0.3 are not significantly worse than "
                         f"{comp.reference:g} (paired over 6 seeds, Holm-corrected, 95 %).")
    header = text.splitlines()[1].split()
    assert header[:3] == ["dropout", "n", "mean"] and header[-2:] == ["not", "worse"]
    assert f"{comp.reference:g} (best)" in text
    assert values_text([1, 2, 3, 4, 5], [1, 2, 4]) == "1–2, 4"


def test_a_baseline_and_losses(tmp_path):
    run = write_run(tmp_path / "run")
    comp = comparison(run, "dropout", baseline=0.5)
    rows = {r["value"]: r for r in comp.rows}
    assert comp.reference == 0.5 and comp.reference_kind == "baseline"
    assert rows[0.1]["diff"] > 0 and rows[0.1]["not_worse"] and not rows[0.7]["not_worse"]
    assert "not significantly worse than the baseline 0.5" in format_comparison(comp)
    loss = comparison(run, "dropout", metric="loss")
    assert loss.reference in (0.1, 0.3) and {r["value"]: r for r in loss.rows}[0.7]["diff"] > 0


def test_diverged_members_are_counted_out_and_said(tmp_path):
    run = write_run(tmp_path / "run")
    doc = json.loads((run / "results.json").read_text())
    doc["members"][0]["test"] = {"loss": None, "accuracy": 0.1}   # diverged: chance accuracy, no loss
    doc["members"][1]["test"]["accuracy"] = math.nan
    (run / "results.json").write_text(json.dumps(doc))
    comp = comparison(run, "dropout")
    rows = {r["value"]: r for r in comp.rows}
    assert comp.excluded == 2 and rows[0.1]["n"] == 4 and rows[0.1]["excluded"] == 2
    assert rows[0.1]["pairs"] == (4 if comp.reference != 0.1 else 4)
    assert "; 2 member(s) with a missing or diverged test accuracy counted out" in format_comparison(comp)


def test_folds_are_paired_and_corrected(tmp_path):
    comp = comparison(write_run(tmp_path / "run", seeds=2, folds=5), "dropout")
    assert comp.pairing == "2 seeds × 5 folds" and comp.folds == 5
    assert "Nadeau-Bengio" in comp.assumption and "Nadeau-Bengio" in format_comparison(comp)
    assert {r["ci_method"] for r in comp.rows} == {"t, Nadeau-Bengio corrected for 5 folds"}


def test_data_frame_from_python(tmp_path):
    run = write_run(tmp_path / "run")
    df = jaxmlp.compare(run, by="dropout")
    assert list(df["dropout"]) == [0.1, 0.3, 0.5, 0.7] and df.attrs["reference_kind"] == "best"
    assert list(df.columns[:3]) == ["dropout", "n", "mean"] and df["not_worse"].tolist()[2:] == [False, False]
    assert format_comparison(df) == format_comparison(comparison(run, "dropout"))


def test_without_pandas_the_frame_is_a_one_line_usage_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(UsageError, match=r"pip install 'jaxmlp\[frames\]'"):
        jaxmlp.compare(write_run(tmp_path / "run"))


def test_command_prints_the_table_the_set_and_the_power(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert main(["compare", str(run), "--by", "dropout", "--power", "2"]) == 0
    out = capsys.readouterr().out
    assert "rates 0.1–0.3 are not significantly worse than" in out
    assert "to detect a true difference of 2 points with 80 % power" in out
    comp = comparison(run, "dropout")
    sd = float(np.median([r["diff_sd"] for r in comp.rows if r["value"] != comp.reference]))
    assert f"{stats.seeds_needed(2.0, sd)} seed(s) for one comparison" in out
    assert main(["compare", str(run), "--baseline", "0.50", "--split", "val", "--metric", "loss"]) == 0
    assert "than the baseline 0.5" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--by", "momentum"], "'momentum' is not a setting of this run's members; settings: hidden, dropout, seed"),
    (["--baseline", "0.2"], "0.2 is not a value of 'dropout' in this run; its values: 0.1, 0.3, 0.5, 0.7"),
    (["--by", "hidden"], "'hidden' takes 1 value(s) in these members: nothing to compare"),
    (["--power", "0"], "--power takes a positive difference, got 0"),
    (["--metric", "f1"], "argument --metric: invalid choice: 'f1' (choose from 'accuracy', 'loss'); "
                         "see 'jaxmlp compare --help'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    run = write_run(tmp_path / "run")
    assert main(["compare", str(run), *args]) == 2
    assert capsys.readouterr().err == f"jaxmlp: error: {message}\n"


def test_a_folder_without_results_is_exit_2(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no results.json" in err and err.count("\n") == 1
