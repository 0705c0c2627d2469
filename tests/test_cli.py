"""The `jaxmlp` command: bad input is one line on stderr with exit code 2 and writes nothing; a good run
writes the run directory of DESIGN.md."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

# Imported before cli.main runs: main() sets XLA_FLAGS (host device count) only when jax is not yet
# imported, and these in-process tests should not change the device layout of the whole test session.
import jax  # noqa: F401
import pytest

from conftest import needs_real_data, write_dataset
from jaxmlp import cli

RUN_FLAGS = ["--hidden", "8", "--batch-size", "32", "--epochs", "1", "--quiet", "--no-plots"]


def jaxmlp_script() -> str:
    """The installed console script next to this interpreter (the editable install puts it there)."""
    found = Path(sys.executable).with_name("jaxmlp")
    return str(found) if found.exists() else shutil.which("jaxmlp")


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# ---- bad input -----------------------------------------------------------------------------------------

@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty current directory, so default paths (checkpoints/<name>) land where the test can see them."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def corrupt_dir(tmp_path: Path, how: str) -> Path:
    folder = write_dataset(tmp_path / f"corrupt-{how}", n_train=50, n_test=20)
    target = folder / "train-images-idx3-ubyte.gz"
    if how == "truncated-gzip":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif how == "not-idx":
        target.write_bytes(b"this is not an IDX file at all")
    return folder


# (id, argv after the command's data flags, words the one-line message must contain)
BAD_INPUT = [
    ("unknown-dataset", ["train", "--dataset", "cifar10"], ["unknown dataset", "cifar10", "fashion_mnist"]),
    ("malformed-hidden", ["train", "--hidden", "8,x"], ["--hidden", "8,x", "malformed"]),
    ("hidden-zero", ["train", "--hidden", "8,0"], ["--hidden", "1.."]),
    ("dropout-one", ["train", "--dropout", "1"], ["--dropout", "outside [0, 1)"]),
    ("dropout-negative", ["train", "--dropout=-0.1"], ["--dropout", "outside [0, 1)"]),
    ("negative-l1", ["train", "--l1=-0.01"], ["--l1", "outside [0"]),
    ("negative-l2", ["train", "--l2=-1e-4"], ["--l2", "outside [0"]),
    ("lr-zero", ["train", "--lr", "0"], ["--lr", "outside (0"]),
    ("lr-negative", ["sweep", "--lr=-0.1,0.1"], ["--lr", "outside (0"]),
    ("batch-too-large", ["train", "--batch-size", "1000"], ["--batch-size 1000", "larger", "540 training samples"]),
    ("zero-epochs", ["train", "--epochs", "0"], ["--epochs", "1..", "got 0"]),
    ("unknown-optimizer", ["train", "--optimizer", "lbfgs"], ["unknown optimizer", "lbfgs", "adam"]),
    ("empty-value", ["sweep", "--dropout", ""], ["--dropout is empty"]),
    ("range-num-zero", ["sweep", "--dropout", "0:0.5:0"], ["--dropout", "num <=", "got 0"]),
    ("range-num-negative", ["sweep", "--l2", "0:0.1:-3"], ["--l2", "num <=", "got -3"]),
    ("log-range-zero-bound", ["sweep", "--lr", "0:0.1:3:log"], ["--lr", "log range", "positive bounds"]),
    ("bad-text", ["sweep", "--l1", "lots"], ["--l1", "'lots'", "not a number"]),
    ("unknown-flag", ["train", "--bogus", "3"], ["unrecognized arguments", "--bogus"]),
    ("folds-one", ["sweep", "--folds", "1"], ["--folds", "2.."]),
    ("folds-over-rarest-class", ["sweep", "--folds", "61"], ["--folds 61", "rarest class", "60"]),
    ("train-several-values", ["train", "--dropout", "0.1,0.2"], ["--dropout", "2 values", "jaxmlp sweep"]),
    ("train-several-seeds", ["train", "--seed", "0:2:3"], ["--seed", "3 values", "jaxmlp sweep"]),
    ("train-several-optimizers", ["train", "--optimizer", "sgd,adam"], ["--optimizer", "jaxmlp sweep"]),
]


@pytest.mark.parametrize("argv, words", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, words, synthetic_dir, workdir, capsys):
    out = workdir / "run"
    rc, stdout, stderr = run_main([*argv[:1], "--data-dir", str(synthetic_dir), "--out", str(out),
                                   *RUN_FLAGS, *argv[1:]], capsys)
    assert_usage_error(rc, stderr, words)
    assert stdout == ""
    assert not out.exists()
    assert_nothing_written(workdir)


def assert_nothing_written(workdir: Path) -> None:
    """The current directory is still empty: in particular no default checkpoints/<name> folder."""
    left = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    assert left == [], f"bad input left {left} behind (a checkpoint folder is created before the data is checked?)"


def assert_usage_error(rc: int, stderr: str, words: list[str]) -> None:
    assert rc == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("jaxmlp: error: ") and "Traceback" not in stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("how, words", [
    ("missing", ["lacks", "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]),
    ("truncated-gzip", ["train-images-idx3-ubyte.gz", "corrupt or truncated"]),
    ("not-idx", ["train-images-idx3-ubyte.gz", "not an IDX file"]),
])
def test_bad_data_files(how, words, tmp_path, workdir, capsys):
    if how == "missing":
        data_dir = tmp_path / "empty"
        data_dir.mkdir()
        (data_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")   # one file present, three missing
    else:
        data_dir = corrupt_dir(tmp_path, how)
    out = workdir / "run"
    rc, stdout, stderr = run_main(["train", "--data-dir", str(data_dir), "--out", str(out), *RUN_FLAGS], capsys)
    assert_usage_error(rc, stderr, words)
    assert not out.exists()
    assert_nothing_written(workdir)


def test_out_that_is_a_file(synthetic_dir, workdir, capsys):
    target = workdir / "taken"
    target.write_text("not a folder")
    rc, _, stderr = run_main(["train", "--data-dir", str(synthetic_dir), "--out", str(target), *RUN_FLAGS],
                             capsys)
    assert_usage_error(rc, stderr, [str(target), "is a file", "--out"])
    assert target.read_text() == "not a folder"
    assert sorted(p.name for p in workdir.iterdir()) == ["taken"]


def test_console_script_reports_bad_input_in_one_line(synthetic_dir, tmp_path):
    proc = subprocess.run([jaxmlp_script(), "sweep", "--data-dir", str(synthetic_dir), "--lr", "0:1:3:log",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert_usage_error(proc.returncode, proc.stderr, ["--lr", "positive bounds"])
    assert not (tmp_path / "run").exists()


# ---- good runs -----------------------------------------------------------------------------------------

MEMBER_KEYS = {"index", "hparams", "best_epoch", "epochs_run", "stopped_early", "val", "test"}


def check_run_dir(run: Path, n_members: int, epochs: int) -> dict:
    """Check results.json / results.csv / history.jsonl against DESIGN.md; return results.json."""
    res = json.loads((run / "results.json").read_text())
    assert {"config", "members", "timing", "versions", "devices"} <= set(res)
    assert {"compile_s", "train_s", "samples_per_s"} <= set(res["timing"])
    assert res["versions"]["jax"] and res["devices"]
    assert len(res["members"]) == n_members
    for i, m in enumerate(res["members"]):
        assert MEMBER_KEYS <= set(m) and m["index"] == i
        assert set(m["val"]) == set(m["test"]) == {"loss", "accuracy"}
        assert {"dropout", "l1", "l2", "lr", "seed", "hidden", "optimizer"} <= set(m["hparams"])
        assert m["epochs_run"] == epochs and m["stopped_early"] is False
    with open(run / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_members
    assert {"index", "dropout", "lr", "best_epoch", "epochs_run", "stopped_early", "val.loss", "val.accuracy",
            "test.loss", "test.accuracy"} <= set(rows[0])
    for row, m in zip(rows, res["members"]):
        assert float(row["test.accuracy"]) == pytest.approx(m["test"]["accuracy"])
    lines = (run / "history.jsonl").read_text().splitlines()
    assert len(lines) == epochs
    for e, line in enumerate(lines, start=1):
        h = json.loads(line)
        assert h["epoch"] == e
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert len(h[k]) == n_members and all(isinstance(v, float) for v in h[k])
    return res


def test_train_console_script_end_to_end(synthetic_dir, tmp_path):
    run = tmp_path / "runs" / "one"
    proc = subprocess.run([jaxmlp_script(), "train", "--data-dir", str(synthetic_dir), "--hidden", "16",
                           "--batch-size", "32", "--epochs", "2", "--dropout", "0.2", "--out", str(run),
                           "--quiet", "--no-plots", "--no-checkpoint"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "best validation accuracy" in proc.stdout and str(run) in proc.stdout
    res = check_run_dir(run, n_members=1, epochs=2)
    m = res["members"][0]
    assert m["hparams"]["dropout"] == 0.2 and m["hparams"]["hidden"] == "16"
    assert m["test"]["accuracy"] > 0.5        # the synthetic classes are easy
    assert not (tmp_path / "checkpoints").exists()


def test_sweep_in_process_writes_one_row_per_member(synthetic_dir, workdir, capsys):
    run = workdir / "runs" / "grid"
    rc, stdout, stderr = run_main(["sweep", "--data-dir", str(synthetic_dir), "--out", str(run),
                                   "--no-checkpoint", *RUN_FLAGS, "--epochs", "2", "--dropout", "0,0.5",
                                   "--seed", "0,1"], capsys)
    assert rc == 0, stderr
    assert stdout.startswith("4 member(s)")
    res = check_run_dir(run, n_members=4, epochs=2)
    assert [(m["hparams"]["seed"], m["hparams"]["dropout"]) for m in res["members"]] == [
        (0, 0.0), (0, 0.5), (1, 0.0), (1, 0.5)]


@needs_real_data
def test_real_fashion_mnist_train(workdir, capsys):
    """A tiny real run from the system copy. 1 epoch of 5 % (2,700 samples) gave 0.19–0.64 test accuracy
    over batch sizes, rates and seeds; 3 epochs at batch 32, lr 3e-3 gave 0.69–0.72."""
    run = workdir / "real"
    rc, _, stderr = run_main(["train", "--hidden", "8,16", "--epochs", "3", "--train-fraction", "0.05",
                              "--batch-size", "32", "--lr", "3e-3", "--out", str(run), "--quiet", "--no-plots",
                              "--no-checkpoint"], capsys)
    assert rc == 0, stderr
    res = json.loads((run / "results.json").read_text())
    assert res["config"]["data_source"]["fashion_mnist"].startswith("/usr/share/datasets/fashion-mnist")
    assert res["members"][0]["test"]["accuracy"] > 0.6
