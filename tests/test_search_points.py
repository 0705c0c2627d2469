"""Member sets beyond grids: random and quasi-random points over declared ranges, as one job."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from jaxmlp.errors import UsageError
from jaxmlp.search import sample

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
