"""Scale: the same sweep on 1 and on 4 (simulated) devices, and chunked or not, gives the same numbers.

Device counts are fixed when jax starts, so each layout runs in its own process. Tolerances: float32
reduction order differs between layouts (a member-sharded matmul, a different vmapped block), so metrics
agree to rtol 1e-5 and accuracies to one sample; tanh keeps that noise from being amplified by
units that sit exactly at ReLU's kink (see test_sweep.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FLAGS = ["sweep", "--hidden", "16", "--activation", "tanh", "--batch-size", "32", "--epochs", "3",
         "--dropout", "0,0.2,0.4", "--seed", "0,1", "--quiet", "--no-checkpoint", "--no-plots"]


def _run(tmp: Path, data: Path, name: str, devices: int, *extra: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    out = tmp / name
    subprocess.run([sys.executable, "-m", "jaxmlp", *FLAGS, "--data-dir", str(data), "--out", str(out), *extra],
                   check=True, env=env, capture_output=True, text=True)
    res = json.loads((out / "results.json").read_text())
    res["history"] = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return res


def _assert_same(a: dict, b: dict, n_val: int, n_test: int) -> None:
    assert [m["hparams"] for m in a["members"]] == [m["hparams"] for m in b["members"]]
    for ma, mb in zip(a["members"], b["members"]):
        assert ma["best_epoch"] == mb["best_epoch"] and ma["epochs_run"] == mb["epochs_run"]
        for split, n in (("val", n_val), ("test", n_test)):
            np.testing.assert_allclose(ma[split]["loss"], mb[split]["loss"], rtol=1e-5, atol=1e-6)
            assert abs(ma[split]["accuracy"] - mb[split]["accuracy"]) <= 1.0 / n + 1e-7
    for ha, hb in zip(a["history"], b["history"]):
        np.testing.assert_allclose(ha["train_loss"], hb["train_loss"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ha["val_loss"], hb["val_loss"], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def one_device(synthetic_dir, tmp_path_factory):
    return _run(tmp_path_factory.mktemp("scale"), synthetic_dir, "one", 1)


def test_four_devices_equal_one(one_device, synthetic_dir, tmp_path):
    four = _run(tmp_path, synthetic_dir, "four", 4)
    assert len(one_device["devices"]) == 1
    assert len(four["devices"]) == 4   # 6 members: padded to 8 over 4 devices, padding dropped
    assert len(four["members"]) == 6
    _assert_same(one_device, four, n_val=60, n_test=200)


def test_chunked_equals_unchunked(one_device, synthetic_dir, tmp_path):
    chunked = _run(tmp_path, synthetic_dir, "chunked", 1, "--chunk-size", "2")
    _assert_same(one_device, chunked, n_val=60, n_test=200)


def test_too_large_chunk_names_how_many_fit(synthetic_dir, tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", *FLAGS, "--data-dir", str(synthetic_dir),
                           "--out", str(tmp_path / "x"), "--chunk-size", str(10**9)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "members fit in memory here: use --chunk-size" in line
    assert not (tmp_path / "x").exists()
