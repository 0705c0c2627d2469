"""A user's own model, data and hyperparameter through the public path (examples/residual_mlp.py):
one compiled job, member k equal to the same member alone, load/predict in a new process, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import numpy as np
import pytest

import jaxmlp
from examples import residual_mlp as ex
from jaxmlp.errors import UsageError
from jaxmlp.run import run_sweep

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
# Member alone vs in the sweep: different XLA programs (batched matmuls) round differently; GELU and
# LayerNorm are smooth, so what remains is rounding noise (see tests/test_sweep.py for the measurement).
PARAM_ATOL = 1e-4


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("example") / "run"
    res = run_sweep(ex.config(EPOCHS, quick=True), out, progress=False, keep_variables=True, plots=True)
    return out, res


def test_the_example_is_one_compiled_job_over_a_hyperparameter_jaxmlp_does_not_know(example):
    out, res = example
    assert len(res.members) == 18 and res.timing["compiled_epochs"] == 1
    points = {(m["hparams"]["residual_scale"], m["hparams"]["dropout"], m["hparams"]["seed"]) for m in res.members}
    assert len(points) == 18
    assert res.members[0]["hparams"]["model"] == "user:examples.residual_mlp.model"
    assert res.config["data"]["spirals"]["input_shape"] == [2] and res.config["data"]["spirals"]["num_classes"] == 3
    assert (out / "plots").is_dir() and any((out / "plots").glob("*residual_scale*.png"))
    assert max(m["test"]["accuracy"] for m in res.members) > 0.45     # it learns (3 classes: chance 0.33)


def test_member_k_equals_the_same_member_alone(example):
    _, res = example
    k = 13
    hp = res.members[k]["hparams"]
    config = ex.config(EPOCHS, quick=True)
    config.hparams = {k: v for k, v in config.hparams.items() if k not in ("residual_scale", "dropout")}
    config.points = [{"residual_scale": hp["residual_scale"], "dropout": hp["dropout"]}]
    config.seed = [hp["seed"]]
    alone = run_sweep(config, progress=False, keep_variables=True)
    diffs = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in
             zip(jax_leaves(res.variables[k]), jax_leaves(alone.variables[0]))]
    assert max(diffs) < PARAM_ATOL
    assert alone.members[0]["hparams"] == hp
    assert abs(alone.members[0]["test"]["accuracy"] - res.members[k]["test"]["accuracy"]) <= 1 / 500


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_load_and_predict_in_a_new_process_reproduce_the_run(example):
    out, res = example
    k = res.best()["index"]
    code = ("import jaxmlp, sys\nfrom examples.residual_mlp import model, spirals\n"
            f"t = jaxmlp.load({str(out)!r}, {k}, model=model)\n"
            "print(t.accuracy(*spirals(500, seed=1)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) == pytest.approx(res.members[k]["test"]["accuracy"], abs=1e-6)


def test_load_refuses_a_model_that_does_not_match(example):
    out, _ = example
    with pytest.raises(UsageError, match="does not match the saved variables"):
        jaxmlp.load(out, 0, model=lambda hp: ex.ResidualMLP(width=32))
    with pytest.raises(UsageError, match="pass the same factory"):
        jaxmlp.load(out, 0)


def test_data_frames(example):
    _, res = example
    frame = res.to_dataframe()
    assert len(frame) == 18 and {"residual_scale", "dropout", "test.accuracy"} <= set(frame.columns)
    history = res.history_frame()
    assert len(history) == 18 * EPOCHS and {"epoch", "member", "val_loss", "residual_scale"} <= set(history.columns)


# ---- bad input, from Python: one UsageError, nothing written --------------------------------------------

def _arrays(n=60, classes=3, **changes):
    x, y = ex.spirals(n, classes)
    xt, yt = ex.spirals(n // 2, classes, seed=1)
    arrays = dict(x_train=x, y_train=y, x_test=xt, y_test=yt)
    arrays.update(changes)
    return arrays


class WrongHead(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(5)(x)


BAD = {
    "output-vs-classes": (lambda: jaxmlp.SweepConfig(dataset=[jaxmlp.data.arrays(**_arrays())],
                                                     model=[lambda hp: WrongHead()], epochs=1),
                          "outputs of shape \\(5,\\) per sample, but the data has 3 classes"),
    "mismatched-lengths": (lambda: jaxmlp.data.arrays(**_arrays(y_train=np.zeros(7, int))), "has 60 samples but y_train"),
    "nan-in-data": (lambda: jaxmlp.data.arrays(**_arrays(x_test=np.full((30, 2), np.nan, np.float32))),
                    "NaN or infinite"),
    "label-out-of-range": (lambda: jaxmlp.data.arrays(**_arrays(), num_classes=2), "labels must lie in 0..1"),
    "unknown-name": (lambda: jaxmlp.SweepConfig(residual_scael=[1.0]), "no setting 'residual_scael'"),
    "read-by-nothing": (lambda: jaxmlp.SweepConfig(dataset=[jaxmlp.data.arrays(**_arrays())], hidden=[(4,)],
                                                   hparams={"width_mult": [1.0, 2.0]}, epochs=1),
                        "width_mult is not read by the model, optimizer or loss"),
    "not-finite": (lambda: jaxmlp.SweepConfig(lr=[float("inf")]), "not finite"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_one_usage_error_and_nothing_is_written(case, tmp_path):
    make, message = BAD[case]
    out = tmp_path / "run"
    with pytest.raises(UsageError, match=message) as info:
        config = make()
        if isinstance(config, jaxmlp.SweepConfig):
            run_sweep(config.validate(), out, progress=False)
    assert "\n" not in str(info.value)
    assert not out.exists()


# ---- the command line ----------------------------------------------------------------------------------

def _jaxmlp(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "jaxmlp", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_momentum_swept_over_8_values_is_one_group_and_one_compile(synthetic_dir, tmp_path):
    proc = _jaxmlp("sweep", "--data-dir", str(synthetic_dir), "--hidden", "16", "--optimizer", "sgd", "--lr", "0.05",
                   "--momentum", "0:0.875:8", "--epochs", "1", "--quiet", "--no-plots", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [m["hparams"]["momentum"] for m in res["members"]] == [i * 0.125 for i in range(8)]
    assert res["timing"]["compiled_epochs"] == 1


def test_an_npz_of_other_images_and_classes_trains_the_builtin_models(tmp_path):
    rng = np.random.default_rng(0)
    y, yt = rng.integers(0, 4, 200), rng.integers(0, 4, 80)
    x = (rng.integers(0, 40, (200, 14, 14, 3)) + 150 * (y[:, None, None, None] == np.arange(3))).astype(np.uint8)
    xt = (rng.integers(0, 40, (80, 14, 14, 3)) + 150 * (yt[:, None, None, None] == np.arange(3))).astype(np.uint8)
    np.savez(tmp_path / "tiles.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    proc = _jaxmlp("sweep", "--dataset", "tiles.npz", "--model", "mlp,cnn", "--hidden", "16", "--dropout", "0,0.2",
                   "--epochs", "2", "--batch-size", "16", "--quiet", "--no-plots", "--out", "run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["config"]["data"]["tiles.npz"]["input_shape"] == [14, 14, 3]
    assert res["config"]["data"]["tiles.npz"]["num_classes"] == 4
    assert [m["hparams"]["model"] for m in res["members"]] == ["mlp", "mlp", "cnn", "cnn"]
    trained = jaxmlp.load(tmp_path / "run", 3)
    assert trained.accuracy(xt, yt) == pytest.approx(res["members"][3]["test"]["accuracy"], abs=1e-6)


def test_python_gets_one_cpu_device_per_core_like_the_command():
    code = "import jaxmlp, jax, os; print(len(jax.devices()), len(os.sched_getaffinity(0)))"
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    devices, cores = proc.stdout.split()
    assert devices == cores
