"""Nothing lost, nothing wrong: checkpoints verified against their checksums and the data they were trained
on, only jaxmlp's own files deleted, a folder in use locked, contradicting flags refused.

Every refusal is checked for the same three things: exit code 2 with one line on stderr (no traceback), no
number printed from a state that failed verification (results.json unchanged), nothing of the user's lost.
Sweeps run in this process through the command line (tiny model, 3 epochs), so they are quick.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import jaxmlp
from jaxmlp import checkpoint, cli, results
from jaxmlp.checkpoint_folder import LOCK, MARKER, epoch_checkpoints
from jaxmlp.errors import UsageError
from jaxmlp.results import Results
from jaxmlp.run import run_sweep
from synthetic import write_dataset

EPOCHS = 3
FLAGS = ["--hidden", "8", "--seed", "0,1", "--epochs", str(EPOCHS), "--batch-size", "64", "--train-fraction", "0.3",
         "--quiet", "--no-plots"]


def sweep(data: Path, out: Path, *extra: str, flags=FLAGS) -> list[str]:
    return ["sweep", *flags, "--data-dir", str(data), "--out", str(out), *extra]


def refused(capsys, args: list[str]) -> str:
    """Run the command; it must exit 2 with one line on stderr and print nothing; returns that line."""
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and err.startswith("jaxmlp: error: ") and "\n" not in err, captured.err
    return err


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes (to show nothing changed)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synthetic_dir) -> SimpleNamespace:
    """One finished run with its checkpoints of epochs 1-3 in the default folder ``<out>/checkpoints``."""
    root = tmp_path_factory.mktemp("integrity")
    out = root / "run"
    assert cli.main(sweep(synthetic_dir, out, "--keep", "3")) == 0
    return SimpleNamespace(out=out, data=synthetic_dir, results=Results.read(out))


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished.out, out)
    return out


# ---- integrity: damage anywhere in a checkpoint is found, never read as numbers ----------------------

def _biggest(step: Path, array: str) -> Path:
    return step / "state" / f"group_0.{array}" / "0"


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x10   # one bit: the size and the format stay as they were
    path.write_bytes(bytes(data))


def _damage_meta_value(step: Path) -> None:
    meta = json.loads((step / "meta" / "metadata").read_text())
    meta["history"][-1]["val_loss"][0] += 1e-6    # still valid JSON, still plausible
    (step / "meta" / "metadata").write_text(json.dumps(meta))


DAMAGE = {
    "float bits flipped": lambda step: _flip(_biggest(step, "float32")),
    "int bits flipped": lambda step: _flip(_biggest(step, "int32"), at=0.0),
    "array truncated": lambda step: _biggest(step, "float32").write_bytes(_biggest(step, "float32").read_bytes()[:-8]),
    "array metadata cut": lambda step: (step / "state" / "group_0.float32" / ".zarray").write_text('{"chunks": [1'),
    "meta value changed": _damage_meta_value,
    "meta cut short": lambda step: (step / "meta" / "metadata").write_text('{"format": 4, "epo'),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_final_checkpoint_is_never_evaluated_and_a_rerun_recovers_exactly(finished, run_copy, capsys, kind):
    ckpt = run_copy / "checkpoints"
    DAMAGE[kind](ckpt / str(EPOCHS))
    before = (run_copy / "results.json").read_bytes()

    err = refused(capsys, ["evaluate", str(run_copy), "--member", "1"])
    assert err.startswith(f"jaxmlp: error: the checkpoint of epoch {EPOCHS} (the run's last) in {ckpt} failed "
                          "verification (")
    assert err.endswith("nothing was evaluated: rerun the sweep's command to train that epoch again from the "
                        f"sound checkpoint of epoch {EPOCHS - 1}")
    with pytest.raises(UsageError, match="failed verification"):
        checkpoint.load_member(run_copy, 0)
    assert (run_copy / "results.json").read_bytes() == before

    # Rerunning the finished command resumes from the newest sound checkpoint, with one warning line,
    # retrains the damaged epoch and ends with the same numbers.
    assert cli.main(sweep(finished.data, run_copy, "--keep", "3")) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"jaxmlp: warning: the checkpoint of epoch {EPOCHS} in {ckpt} failed verification (epoch {EPOCHS}: ")
    assert Results.read(run_copy).members == finished.results.members
    assert epoch_checkpoints(ckpt) == [1, 2, 3] and (ckpt / f"{EPOCHS}.unreadable").is_dir()
    assert checkpoint.evaluate_member(run_copy, 1) == finished.results.members[1]["test"]


def test_no_sound_checkpoint_refuses_and_changes_nothing(finished, run_copy, capsys):
    ckpt = run_copy / "checkpoints"
    for step in epoch_checkpoints(ckpt):
        _flip(_biggest(ckpt / str(step), "float32"))
    before = tree(run_copy)
    err = refused(capsys, sweep(finished.data, run_copy))
    assert err.startswith(f"jaxmlp: error: no checkpoint in {ckpt} is sound (epoch 3: the float32 array of "
                          "group_0 does not match its checksum; epoch 2: ")
    assert err.endswith("nothing was changed: use --new-run to discard jaxmlp's checkpoints there and start over, "
                        "or another --checkpoint-dir")
    assert tree(run_copy) == before
    refused(capsys, ["evaluate", str(run_copy)])
    assert tree(run_copy) == before


def test_changed_training_data_is_refused_by_name(tmp_path, capsys):
    data, out = write_dataset(tmp_path / "data"), tmp_path / "run"
    assert cli.main(sweep(data, out, "--keep", "3")) == 0
    shutil.rmtree(out / "checkpoints" / str(EPOCHS))   # as if killed before its last save: a resume would train
    write_dataset(data, seed=7)                          # other images and labels in the same files
    capsys.readouterr()
    before = tree(out)
    err = refused(capsys, sweep(data, out, "--keep", "3"))
    assert err == (f"jaxmlp: error: the training data changed since the checkpoint of epoch {EPOCHS - 1} in "
                   f"{out / 'checkpoints'} (fashion_mnist: other arrays now); resuming would mix old and new "
                   "data: restore the data it was trained on, or use --new-run to start over on the new data")
    assert refused(capsys, ["evaluate", str(out)]).startswith("jaxmlp: error: ")
    assert tree(out) == before


# ---- deleting only what jaxmlp wrote -----------------------------------------------------------------

def _user_folder(path: Path, names=("2023", "2024")) -> None:
    for name in names:
        (path / name).mkdir(parents=True)
        (path / name / "photo.jpg").write_bytes(b"\xff\xd8 a user's photo")


@pytest.mark.parametrize("contents", ["year folders", "one file", "an empty epoch-like folder"])
def test_a_folder_of_others_is_refused_and_left_as_it_is(finished, tmp_path, capsys, contents):
    ckpt = tmp_path / "mine"
    if contents == "year folders":
        _user_folder(ckpt)
    elif contents == "one file":
        ckpt.mkdir()
        (ckpt / "notes.txt").write_text("keep me")
    else:
        (ckpt / "7").mkdir(parents=True)
    before = tree(ckpt), sorted(p.name for p in ckpt.iterdir())
    for extra in ([], ["--new-run"], ["--resume"]):
        err = refused(capsys, sweep(finished.data, tmp_path / "run", "--checkpoint-dir", str(ckpt), *extra))
        assert err.startswith(f"jaxmlp: error: checkpoint folder {ckpt} holds files jaxmlp did not write (")
        assert "unreadable" not in err and "--new-run" not in err
        assert (tree(ckpt), sorted(p.name for p in ckpt.iterdir())) == before
    assert not (tmp_path / "run").exists()
    assert refused(capsys, ["evaluate", str(finished.out), "--checkpoint-dir", str(ckpt)]).endswith(
        "was the run made with --no-checkpoint?")


def test_new_run_deletes_only_jaxmlps_checkpoints(finished, run_copy, capsys):
    ckpt = run_copy / "checkpoints"
    (ckpt / "notes.txt").write_text("keep me")
    (ckpt / "old").mkdir()
    (ckpt / "old" / "3").mkdir()
    assert cli.main(sweep(finished.data, run_copy, "--new-run")) == 0
    assert f"--new-run: discarded 3 checkpoint(s) in {ckpt}" in capsys.readouterr().err
    assert sorted(p.name for p in ckpt.iterdir()) == [MARKER, "2", "3", "notes.txt", "old"]
    assert (ckpt / "notes.txt").read_text() == "keep me" and (ckpt / "old" / "3").is_dir()

    # A folder named like an epoch in jaxmlp's folder would be taken for a checkpoint: refused, kept.
    _user_folder(ckpt, ["2023"])
    before = tree(ckpt)
    err = refused(capsys, sweep(finished.data, run_copy, "--new-run"))
    assert err.startswith(f"jaxmlp: error: {ckpt / '2023'} is not a jaxmlp checkpoint")
    assert tree(ckpt) == before


# ---- one run per folder ------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from jaxmlp.checkpoint_folder import Lock
Lock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(300)
"""


def test_a_folder_in_use_is_refused_and_a_dead_runs_lock_taken_over(finished, run_copy, capsys):
    ckpt = run_copy / "checkpoints"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ckpt)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, JAX_PLATFORMS="cpu"))
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree(run_copy)
        for extra in ([], ["--new-run"]):
            err = refused(capsys, sweep(finished.data, run_copy, *extra))
            assert err == (f"jaxmlp: error: checkpoint folder {ckpt} is in use by process {holder.pid} on "
                           f"{socket.gethostname()} (lock file {ckpt / LOCK}); wait for that run to end, or give "
                           "this one another --checkpoint-dir")
        assert tree(run_copy) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing: its lock file names it; the next run takes it over.
    assert json.loads((ckpt / LOCK).read_text())["pid"] == holder.pid
    assert cli.main(sweep(finished.data, run_copy, "--keep", "3")) == 0
    assert (f"jaxmlp: taking over the lock of process {holder.pid} on {socket.gethostname()}, which is no longer "
            f"running, in {ckpt}") in capsys.readouterr().err
    assert not (ckpt / LOCK).exists()


def test_a_lock_of_another_host_is_refused(finished, run_copy, capsys):
    ckpt = run_copy / "checkpoints"
    (ckpt / LOCK).write_text(json.dumps({"pid": 4242, "host": "elsewhere"}))
    err = refused(capsys, sweep(finished.data, run_copy))
    assert err.endswith(f"in use by process 4242 on elsewhere (lock file {ckpt / LOCK}); if that run has ended, "
                        "delete the lock file and rerun")


# ---- flags, run directories ---------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--resume", "--new-run"], "--resume and --new-run contradict each other"),
    (["--no-checkpoint", "--resume"], "--resume needs checkpoints but --no-checkpoint turns them off"),
    (["--no-checkpoint", "--new-run"], "--new-run needs checkpoints but --no-checkpoint turns them off"),
    (["--no-checkpoint", "--checkpoint-dir", "x"], "--no-checkpoint and --checkpoint-dir contradict each other"),
])
def test_contradicting_flags_are_refused_before_anything(finished, run_copy, tmp_path, capsys, flags, message):
    before = tree(run_copy)
    assert refused(capsys, sweep(finished.data, run_copy, *flags)).startswith(f"jaxmlp: error: {message}")
    assert tree(run_copy) == before
    refused(capsys, sweep(finished.data, tmp_path / "new", *flags))
    assert not (tmp_path / "new").exists()


def test_python_refuses_contradicting_arguments(finished, tmp_path):
    config = cli.config_from_args(cli.build_parser().parse_args(sweep(finished.data, tmp_path)))
    with pytest.raises(UsageError, match="contradict"):
        run_sweep(config, tmp_path / "run", resume=True, new_run=True)
    with pytest.raises(UsageError, match="--resume needs checkpoints"):
        run_sweep(config, tmp_path / "run", checkpoint_dir=None, resume=True)
    assert not (tmp_path / "run").exists()


def test_another_sweeps_out_is_refused_unless_replaced_whole(finished, run_copy, capsys):
    (run_copy / "plots").mkdir()
    (run_copy / "plots" / "accuracy_vs_lr.png").write_bytes(b"old figure")
    (run_copy / "notes.txt").write_text("keep me")
    before = tree(run_copy)
    other = sweep(finished.data, run_copy, "--lr", "0.01")
    err = refused(capsys, other)
    assert err == (f"jaxmlp: error: --out {run_copy} holds the results of another sweep (--lr default there, 0.01 "
                   "now); choose another --out, or add --replace to replace them (results, history, plots and "
                   "checkpoints)")
    assert tree(run_copy) == before
    assert cli.main(other + ["--replace"]) == 0
    assert Results.read(run_copy).config["hparams"]["lr"] == [0.01]
    assert not (run_copy / "plots").exists() and (run_copy / "notes.txt").read_text() == "keep me"
    assert epoch_checkpoints(run_copy / "checkpoints") == [2, 3]   # the old sweep's 1-3 went


def test_checkpoints_default_to_the_run_directory_from_python_and_the_command_line(finished, tmp_path, capsys):
    # Two runs whose --out end in the same name do not share checkpoints.
    a, b = tmp_path / "A" / "exp", tmp_path / "B" / "exp"
    assert cli.main(sweep(finished.data, a, "--epochs", "1")) == 0
    config = cli.config_from_args(cli.build_parser().parse_args(sweep(finished.data, b, "--lr", "0.01",
                                                                      "--epochs", "1")))
    jaxmlp.sweep(config, out=b, progress=False, plots=False)
    capsys.readouterr()
    for run in (a, b):
        assert epoch_checkpoints(run / "checkpoints") == [1]
        assert checkpoint.default_dir(run) == run / "checkpoints"
        assert checkpoint.evaluate_member(run, 0) == Results.read(run).members[0]["test"]


# ---- every failure path is one line -------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (b"[]", "is not a jaxmlp results file"),
    (b"{}", "is not a jaxmlp results file"),
    (b"\xff\xfe{}", "cannot read"),
])
def test_plot_of_a_results_file_that_is_not_one(tmp_path, capsys, content, message):
    (tmp_path / "results.json").write_bytes(content)
    assert message in refused(capsys, ["plot", str(tmp_path)])


def test_plot_where_plots_is_a_file_and_a_damaged_history(finished, run_copy, capsys):
    (run_copy / "plots").write_text("a file of the user's")
    err = refused(capsys, ["plot", str(run_copy)])
    assert err.startswith(f"jaxmlp: error: {run_copy / 'plots'} is a file, so the figures cannot be written there")
    assert (run_copy / "plots").read_text() == "a file of the user's"
    (run_copy / "plots").unlink()
    (run_copy / "history.jsonl").write_text('{"epoch": 1, "train_lo\n')
    err = refused(capsys, ["plot", str(run_copy)])
    assert err.startswith(f"jaxmlp: error: cannot read {run_copy / 'history.jsonl'} (")
    assert "results.json is intact" in err


def test_results_are_kept_when_out_refuses_them_after_training(finished, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    write = results.Results.write

    def refusing(self, where):
        if Path(where) == out:
            raise PermissionError(13, "Permission denied", str(out / "results.json"))
        return write(self, where)

    monkeypatch.setattr(results.Results, "write", refusing)
    err = refused(capsys, sweep(finished.data, out))
    prefix = f"jaxmlp: error: cannot write the results to {out} (Permission denied); they are saved in "
    assert err.startswith(prefix) and err.endswith("/: copy them from there")
    kept = Path(err[len(prefix):-len("/: copy them from there")])
    try:
        assert Results.read(kept).members == finished.results.members
    finally:
        shutil.rmtree(kept)
