"""Member sets beyond grids: random and quasi-random points over declared ranges, as one job."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from jaxmlp.errors import UsageError
from jaxmlp.search import Choice, IntRange, Range, parse_spec, sample

SPACE = {"lr": (1e-4, 1e-1), "dropout": (0.0, 0.6), "l2": (1e-6, 1e-2)}


@pytest.mark.parametrize("method", ["random", "sobol", "halton"])
def test_points_lie_in_their_ranges_and_repeat_with_the_seed(method):
    points = sample(SPACE, 64, method, seed=3)
    assert len(points) == 64 and len({tuple(p.values()) for p in points}) == 64
    for name, (low, high) in SPACE.items():
        values = np.array([p[name] for p in points])
        assert (values >= low).all() and (values < high).all()
    assert sample(SPACE, 64, method, seed=3) == points and sample(SPACE, 64, method, seed=4) != points


def test_log_axes_spread_over_decades_and_linear_ones_evenly():
    points = sample(SPACE, 4096, "sobol")
    lr = np.array([p["lr"] for p in points])
    dropout = np.array([p["dropout"] for p in points])
    # log-uniform over 1e-4..1e-1: each decade holds a third; uniform over 0..0.6: each half holds half.
    for lo in (1e-4, 1e-3, 1e-2):
        assert abs(((lr >= lo) & (lr < 10 * lo)).mean() - 1 / 3) < 0.01
    assert abs((dropout < 0.3).mean() - 0.5) < 0.01
    linear = np.array([p["lr"] for p in sample({"lr": (1e-4, 1e-1)}, 4096, "sobol", log={"lr": False})])
    assert abs((linear < 0.05).mean() - 0.5) < 0.01                                 # the axis overridden


def test_ranges_are_checked_against_the_table():
    with pytest.raises(UsageError, match="--dropout 1 is outside"):
        sample({"dropout": (0.0, 1.0)}, 4)
    with pytest.raises(UsageError, match="log axis: give a positive low bound"):
        sample({"lr": (1e-3, 1e-1), "l2": (0.0, 1e-2)}, 4)
    with pytest.raises(UsageError, match="is empty"):
        sample({"lr": (1e-2, 1e-3)}, 4)
    with pytest.raises(UsageError, match="unknown sampler"):
        sample(SPACE, 4, "grid")


def test_64_random_points_train_as_one_compiled_job(synthetic_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "sweep", "--data-dir", str(synthetic_dir), "--hidden", "8,16",
                           "--sample", "64", "--lr", "1e-4:1e-1", "--dropout", "0:0.6", "--l2", "1e-6:1e-2",
                           "--epochs", "1", "--quiet", "--no-plots", "--out", "run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    points = {(m["hparams"]["lr"], m["hparams"]["dropout"], m["hparams"]["l2"]) for m in res["members"]}
    assert len(res["members"]) == 64 and len(points) == 64 and res["timing"]["compiled_epochs"] == 1
    # The flags' ranges in the table's order (dropout, l2, lr), drawn with the default sampler and seed.
    expected = sample({"dropout": (0.0, 0.6), "l2": (1e-6, 1e-2), "lr": (1e-4, 1e-1)}, 64, "random", 0)
    assert points == {(p["lr"], p["dropout"], p["l2"]) for p in expected}
    assert all(math.isfinite(m["test"]["accuracy"]) for m in res["members"])


# ---- integers and choices ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["random", "sobol", "halton"])
@pytest.mark.parametrize("log", [False, True])
def test_integer_ranges_give_integers_within_bounds_and_reach_both_ends(method, log):
    points = sample({"units": IntRange(16, 256, log=log)}, 1024, method, seed=1)
    units = np.array([p["units"] for p in points])
    assert all(isinstance(p["units"], float) and p["units"].is_integer() for p in points)   # e.g. 64.0
    assert units.min() == 16 and units.max() == 256 and len(set(units)) > 100
    # log: as many below √(16·256) = 64 as above; linear: a quarter of 16..256 lies below 76.
    assert abs((units < 64).mean() - (0.5 if log else 48 / 241)) < 0.05


def test_a_small_integer_range_is_exactly_balanced_by_sobol():
    points = sample({"layers": IntRange(1, 4)}, 64, "sobol")
    assert sorted(Counter(p["layers"] for p in points).items()) == [(1.0, 16), (2.0, 16), (3.0, 16), (4.0, 16)]
    assert {p["k"] for p in sample({"k": IntRange(5, 5)}, 8)} == {5.0}            # one integer: a constant


@pytest.mark.parametrize("k", [2, 4, 8])
def test_choices_come_only_from_the_list_and_sobol_balances_them_exactly(k):
    values = [round(0.1 * i, 1) for i in range(k)]
    points = sample({"dropout": Choice(values)}, 128, "sobol", seed=5)
    counts = Counter(p["dropout"] for p in points)
    assert set(counts) == set(values) and set(counts.values()) == {128 // k}
    random = Counter(p["dropout"] for p in sample({"dropout": Choice([0.0, 0.2, 0.5])}, 3000, "random"))
    assert set(random) == {0.0, 0.2, 0.5} and all(abs(c / 3000 - 1 / 3) < 0.03 for c in random.values())


def test_a_mixed_space_and_its_compact_strings():
    space = {"lr": Range(1e-4, 1e-1), "units": IntRange(8, 64, log=True), "dropout": Choice([0.0, 0.25, 0.5]),
             "l2": (1e-6, 1e-2), "momentum": Range(0.5, 0.99, log=False)}
    points = sample(space, 256, "halton", seed=2)
    assert all(list(p) == list(space) for p in points) and sample(space, 256, "halton", seed=2) == points
    for p in points:
        assert 1e-4 <= p["lr"] < 1e-1 and 1e-6 <= p["l2"] < 1e-2 and 0.5 <= p["momentum"] < 0.99
        assert p["units"].is_integer() and 8 <= p["units"] <= 64 and p["dropout"] in (0.0, 0.25, 0.5)
    compact = {"lr": "1e-4:1e-1", "units": "8:64:int:log", "dropout": "choice:0,0.25,0.5", "l2": "1e-6:1e-2",
               "momentum": "0.5:0.99:lin"}
    assert sample(compact, 256, "halton", seed=2) == points
    assert parse_spec("16:256:int", "units") == IntRange(16, 256)
    assert parse_spec("1e-3:1:log", "dropout") == Range(1e-3, 1.0, log=True)
    # A Range's own axis wins over the table's (lr is log in the table) and over sample()'s `log`.
    linear = np.array([p["lr"] for p in sample({"lr": Range(1e-4, 1e-1, log=False)}, 4096, "sobol", log={"lr": True})])
    assert abs((linear < 0.05).mean() - 0.5) < 0.01


@pytest.mark.parametrize("space, message", [
    ({"dropout": Choice([])}, "--dropout choice is empty"),
    ({"dropout": "choice:"}, "--dropout choice is empty"),
    ({"dropout": Choice([0.0, 0.2, 0.0])}, "repeats a value"),
    ({"dropout": Choice([0.0, 1.0])}, "--dropout 1 is outside"),
    ({"units": IntRange(256, 16)}, "--units integer range 256:16 is empty; give low <= high"),
    ({"units": IntRange(1.5, 16)}, "--units integer range 1.5:16 needs integer bounds"),
    ({"units": IntRange(0, 16, log=True)}, "log axis: give a low bound of at least 1"),
    ({"lr": [1e-4, 1e-3, 1e-2]}, "a range is \\(low, high\\)"),
    ({"lr": "1e-4:1e-1:5"}, "under --sample give low:high"),
    ({"units": "1.5:16:int"}, "needs integer bounds"),
    ({"lr": "a:b"}, "under --sample a range is low:high"),
    ({"dropout": "choice:0,x"}, "a choice is choice:a,b,c"),
])
def test_bad_specs_are_one_line_usage_errors(space, message):
    with pytest.raises(UsageError, match=message) as e:
        sample(space, 4)
    assert "\n" not in str(e.value)


def _sample_config(*flags):
    from jaxmlp.cli import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(["sweep", "--data-dir", ".", *flags]))


def test_cli_sample_takes_choices_and_integer_ranges_and_keeps_lists_a_grid():
    config = _sample_config("--sample", "16", "--sampler", "sobol", "--dropout", "choice:0,0.2,0.5",
                            "--lr", "1e-4:1e-1", "--momentum", "0.5,0.9")
    assert len(config.points) == 16 and {p["dropout"] for p in config.points} <= {0.0, 0.2, 0.5}
    assert config.points == sample({"dropout": Choice([0, 0.2, 0.5]), "lr": (1e-4, 1e-1)}, 16, "sobol", 0)
    assert config.hparams == {"momentum": [0.5, 0.9]}                # a list stays a grid crossed with the points
    config = _sample_config("--sample", "8", "--sampler", "sobol", "--b1", "0:0:int", "--dropout", "0.1:0.2:log")
    assert {p["b1"] for p in config.points} == {0.0} and all(0.1 <= p["dropout"] < 0.2 for p in config.points)


@pytest.mark.parametrize("flags, message", [
    (["--dropout", "choice:"], "--dropout choice is empty"),
    (["--dropout", "choice:0,1"], "--dropout 1 is outside"),
    (["--lr", "1e-1:1e-4"], "--lr range 0.1:0.0001 is empty"),
])
def test_cli_sample_errors_are_one_line_and_exit_2(flags, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "sweep", "--sample", "4", *flags, "--out", "run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
