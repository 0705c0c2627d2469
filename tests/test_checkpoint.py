"""Orbax checkpoints: a killed sweep resumes and finishes exactly as if it had never been interrupted.

Interrupted sweeps run as subprocesses through a small driver (written below) that calls ``jaxmlp``'s
command line with test hooks read from the environment, so the library itself carries no test code:

- ``JAXMLP_TEST_EPOCH_LOG``: append the number of every epoch trained (what a resumed run retrains);
- ``JAXMLP_TEST_HOOK=mid:E``: stall between the two chunks of epoch E (the first trained, the second not);
- ``JAXMLP_TEST_HOOK=save:E``: stop the process while epoch E's checkpoint is being written (a save in
  flight): from ``on_checkpoint_start`` a watcher thread waits for Orbax's temporary folder of epoch E
  to appear, then stops the whole process with SIGSTOP (the write takes ~30 ms; the watcher looks every
  0.2 ms);
- ``JAXMLP_TEST_HOOK=torn:E``: once epoch E's checkpoint is saved (``on_checkpoint_end``), flip a bit of
  its largest array file (as a save whose data never fully reached the disk) and stall: a checkpoint that
  fails verification;
- ``JAXMLP_TEST_HOOK=full:E``: from epoch E's save on (``on_checkpoint_start``), no file may grow past
  100 kB (``RLIMIT_FSIZE``), which the writes meet as they would a full disk.

Only public hooks (``jaxmlp.Callback``) are used: the tests do not depend on Orbax's private modules.
A stall writes the marker file and sleeps (or stops); the test then SIGKILLs the process. Subprocesses see as many
CPU devices as this process, so their numbers can be compared bit for bit with in-process runs, and share
a persistent compilation cache to keep the file quick.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from jaxmlp import checkpoint, checkpoint_io, checkpoint_state, cli, models
from jaxmlp.errors import UsageError
from jaxmlp.idx import read_idx
from jaxmlp.results import Results
from jaxmlp.run import run_sweep

EPOCHS = 6
# 4 members in chunks of 2 (two units per group, so "mid-epoch" exists); lr 0.3 with seed 8 stops early
# (patience 2: after epoch 3, best epoch 1), so best-epoch variables differ from the last ones.
FLAGS = ["--hidden", "16", "--dropout", "0.3", "--seed", "8,9", "--lr", "0.03,0.3", "--epochs", str(EPOCHS),
         "--patience", "2", "--batch-size", "32", "--chunk-size", "2", "--train-fraction", "0.3",
         "--quiet", "--no-plots"]

DRIVER = '''
import os, resource, signal, sys, threading, time
from pathlib import Path
from jaxmlp import cli
from jaxmlp.callbacks import Callback

LOG = os.environ.get("JAXMLP_TEST_EPOCH_LOG")
KIND, _, AT = os.environ.get("JAXMLP_TEST_HOOK", "").partition(":")
AT = int(AT or 0)

def stall():
    Path(os.environ["JAXMLP_TEST_MARKER"]).write_text("stalled")
    time.sleep(600)

class Hooks(Callback):
    def on_epoch_start(self, epoch):
        if LOG:
            with open(LOG, "a") as f:
                f.write(f"{epoch}\\n")

    def on_unit_start(self, epoch, unit):
        if KIND == "mid" and epoch == AT and unit == 1:
            stall()

    def on_checkpoint_start(self, epoch):
        if KIND == "full" and epoch == AT:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        if KIND == "save" and epoch == AT:
            threading.Thread(target=stop_in_flight, daemon=True).start()

    def on_checkpoint_end(self, epoch):
        if KIND == "torn" and epoch == AT:
            state = CKPT / str(AT) / "state"
            biggest = max((p for p in state.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
            data = bytearray(biggest.read_bytes())
            data[len(data) // 2] ^= 0x01
            biggest.write_bytes(bytes(data))
            stall()

def stop_in_flight():
    # Orbax writes epoch AT into a temporary folder "AT.<something>" and renames it "AT" when complete.
    while not any(p.name.startswith(f"{AT}.") for p in CKPT.iterdir()):
        time.sleep(0.0002)
    Path(os.environ["JAXMLP_TEST_MARKER"]).write_text("stopped")
    os.kill(os.getpid(), signal.SIGSTOP)

CKPT = Path(sys.argv[sys.argv.index("--checkpoint-dir") + 1]) if "--checkpoint-dir" in sys.argv else None


sys.exit(cli.main(sys.argv[1:], callbacks=[Hooks()]))
'''


# ---- helpers -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sub(tmp_path_factory, synthetic_dir) -> SimpleNamespace:
    """How to start a sweep subprocess: the driver, the environment, the data."""
    root = tmp_path_factory.mktemp("ckpt_sub")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={len(jax.local_devices())}",
               JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return SimpleNamespace(driver=driver, env=env, data=synthetic_dir)


def sweep_args(sub, out: Path, ckpt: Path, *extra: str, flags=FLAGS) -> list[str]:
    return ["sweep", *flags, "--data-dir", str(sub.data), "--out", str(out), "--checkpoint-dir", str(ckpt), *extra]


def run(sub, args: list[str], hook: str = "", log: Path | None = None, env: dict | None = None,
        plain: bool = False) -> subprocess.CompletedProcess:
    """Run a sweep to its end (`plain`: ``python -m jaxmlp``, else through the driver)."""
    cmd = [sys.executable, "-m", "jaxmlp"] if plain else [sys.executable, str(sub.driver)]
    env = dict(env or sub.env, JAXMLP_TEST_HOOK=hook, JAXMLP_TEST_EPOCH_LOG=str(log or ""))
    return subprocess.run(cmd + args, env=env, capture_output=True, text=True, timeout=300)


def run_killed(sub, args: list[str], hook: str, log: Path, marker: Path) -> None:
    """Start a sweep, wait until its hook stalls, SIGKILL it."""
    env = dict(sub.env, JAXMLP_TEST_HOOK=hook, JAXMLP_TEST_EPOCH_LOG=str(log), JAXMLP_TEST_MARKER=str(marker))
    output = marker.with_suffix(".out")
    with open(output, "w") as out:
        proc = subprocess.Popen([sys.executable, str(sub.driver), *args], env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + 300
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended (rc {proc.returncode}) before {hook}: {output.read_text()}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{hook} never reached: {output.read_text()}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def epochs_trained(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def listing(ckpt: Path) -> list[str]:
    """The folder's names, jaxmlp's marker left out."""
    return sorted(p.name for p in ckpt.iterdir() if p.name != ".jaxmlp-checkpoints")


def complete_steps(ckpt: Path) -> list[int]:
    """Epochs with a complete checkpoint: Orbax renames a checkpoint to its bare epoch once written."""
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """results.json members (metrics, best epochs, ...) and history.jsonl equal, field by field."""
    got, want = Results.read(run_dir), Results.read(reference)
    assert got.config == want.config
    for g, w in zip(got.members, want.members, strict=True):
        for field in w:
            assert g[field] == w[field], (w["index"], field)
    hist, ref_hist = history(run_dir), history(reference)
    assert len(hist) == len(ref_hist) == EPOCHS
    for h, r in zip(hist, ref_hist):
        for field in r:
            assert h[field] == r[field], (r["epoch"], field)


def config_of(args: list[str]):
    return cli.config_from_args(cli.build_parser().parse_args(args))


@pytest.fixture(scope="module")
def reference(sub, tmp_path_factory) -> SimpleNamespace:
    """One uninterrupted run (``python -m jaxmlp``), with its checkpoints: what every other run must equal."""
    root = tmp_path_factory.mktemp("ckpt_reference")
    out, ckpt = root / "run", root / "ckpt"
    args = sweep_args(sub, out, ckpt)
    proc = run(sub, args + ["--keep", "3"], plain=True)
    assert proc.returncode == 0, proc.stderr
    res = Results.read(out)
    # The data make the comparisons meaningful: one member stops early, with a best epoch before its last.
    early = [m for m in res.members if m["stopped_early"]]
    assert early and all(m["best_epoch"] < m["epochs_run"] for m in early)
    return SimpleNamespace(out=out, ckpt=ckpt, args=args, results=res)


# ---- resuming ----------------------------------------------------------------------------------------

def test_killed_sweep_resumes_exactly_as_if_never_interrupted(sub, reference, tmp_path):
    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    args = sweep_args(sub, out, ckpt)
    logs = [tmp_path / f"epochs{i}.log" for i in range(4)]

    # 1. SIGKILL in the middle of epoch 3: its first chunk trained, the second not, nothing saved.
    run_killed(sub, args, "mid:3", logs[0], tmp_path / "marker0")
    assert epochs_trained(logs[0]) == [1, 2, 3]
    saved = complete_steps(ckpt)
    assert saved and max(saved) <= 2

    # 2. Rerun with --resume: it goes on after the newest checkpoint; then the disk "fills" at epoch 4's
    #    save: one line on stderr, exit 2, the earlier checkpoints intact.
    proc = run(sub, args + ["--resume"], hook="full:4", log=logs[1])
    assert proc.returncode == 2, proc.stderr
    assert epochs_trained(logs[1])[0] == max(saved) + 1
    error = proc.stderr.strip().splitlines()[-1]
    assert error == (f"jaxmlp: error: cannot write the checkpoint of epoch 4 to {ckpt} (File too large); "
                     "the checkpoints of epochs 2, 3 are intact: free space or fix permissions there (or "
                     "choose another --checkpoint-dir), then rerun the command to resume")
    assert "Traceback" not in proc.stderr
    assert complete_steps(ckpt) == [2, 3]

    # 3. Rerun with --resume; SIGKILL while epoch 5's checkpoint is being written (before Orbax's rename).
    run_killed(sub, args + ["--resume"], "save:5", logs[2], tmp_path / "marker2")
    assert epochs_trained(logs[2])[:2] == [4, 5]
    assert complete_steps(ckpt) == [3, 4]
    assert not (ckpt / "5").exists() and [p for p in ckpt.iterdir() if p.name.startswith("5.")]   # in flight

    # 4. The same command again, without --resume, continues after epoch 4 and finishes: epochs 1-4 are
    #    never trained again, and the run equals the uninterrupted one exactly.
    proc = run(sub, args, log=logs[3])
    assert proc.returncode == 0, proc.stderr
    assert f"jaxmlp: resuming after epoch 4 from {ckpt}" in proc.stderr
    assert epochs_trained(logs[3]) == [5, 6]
    assert_same_run(out, reference.out)
    assert complete_steps(ckpt) == [5, 6]   # --keep 2; the killed save's leftovers are gone
    assert listing(ckpt) == ["5", "6"]


def test_damaged_checkpoints_are_skipped_with_one_warning(reference, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(reference.ckpt, ckpt)
    assert complete_steps(ckpt) == [4, 5, 6]
    # Epoch 6: its largest array file cut in half; epoch 5: its JSON cut short.
    biggest = max((p for p in (ckpt / "6" / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    (ckpt / "5" / "meta" / "metadata").write_text('{"format": 1, "epo')
    out = tmp_path / "run"
    run_sweep(config_of(reference.args), out, progress=False, checkpoint_dir=ckpt, plots=False, name="run")
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"jaxmlp: warning: the checkpoints of epochs 6, 5 in {ckpt} failed verification "
                                  "(epoch 6: ")
    assert warnings[0].endswith("resuming from the sound one of epoch 4 (the others are kept as <epoch>.unreadable)")
    assert_same_run(out, reference.out)   # epochs 5 and 6 trained again from epoch 4's state
    # The damaged ones are kept aside for inspection; the new 5 and 6 replaced 4 (--keep 2).
    assert listing(ckpt) == ["5", "5.unreadable", "6", "6.unreadable"]


def test_other_settings_are_refused_by_name_and_new_run_discards(sub, reference, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(reference.ckpt, ckpt)
    flags = [f for f in FLAGS]
    flags[flags.index("--lr") + 1] = "0.01"
    flags[flags.index("--epochs") + 1] = "2"
    args = sweep_args(sub, tmp_path / "run", ckpt, flags=flags)
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"jaxmlp: error: {ckpt} holds checkpoints of a different sweep (--epochs 6 in the checkpoint, "
                   "2 now; --lr 0.03,0.3 in the checkpoint, 0.01 now); use --new-run to discard them, "
                   "or another --checkpoint-dir")
    assert complete_steps(ckpt) == [4, 5, 6]

    # One chunk now: each unit's own arrays are saved (in the background) while the next epoch trains
    # on donated buffers; the checkpoint of epoch 1 must still be exact (checked by resuming from it).
    args += ["--chunk-size", "4"]
    assert cli.main(args + ["--new-run"]) == 0
    assert f"jaxmlp: --new-run: discarded 3 checkpoint(s) in {ckpt}" in capsys.readouterr().err
    assert complete_steps(ckpt) == [1, 2]
    meta = json.loads((ckpt / "2" / "meta" / "metadata").read_text())
    assert (meta["epoch"], meta["config"]["hparams"]["lr"], len(meta["history"])) == (2, [0.01], 2)
    first = Results.read(tmp_path / "run")
    shutil.rmtree(ckpt / "2")
    assert cli.main(args) == 0
    assert f"jaxmlp: resuming after epoch 1 from {ckpt}" in capsys.readouterr().err
    again = Results.read(tmp_path / "run")
    assert (again.members, again.history) == (first.members, first.history)


def test_group_grid_round_trip_drops_and_restores_padding(synthetic_dir):
    """Chunks of 2 over 3 hyperparameters pad each stream's second chunk; the saved grid holds exactly
    the 6 real members in member order, and cutting it back gives every unit (padding included)."""
    from jaxmlp import layout, members

    config = config_of(["sweep", "--dropout", "0,0.1,0.2", "--seed", "0,1", "--chunk-size", "2", "--devices", "1",
                        "--data-dir", str(synthetic_dir)])
    groups = config.groups()
    units = layout.plan(config, 0, groups[0], member_bytes=1, n_devices=1)
    assert len(units) == 4 and not all(u.real.all() for u in units)   # padding exists
    prep = SimpleNamespace(config=config, groups=groups, units=units, layout=layout.Layout.of(config),
                           inputs=[None] * len(units))
    # A member's "state": its index (padding repeats a real member, as in training).
    fake = [{"who": np.asarray(u.streams)[:, None] * 3 + u.points, "active": u.real}
            for u in units]
    state = members.SweepState(1, fake, [{}])
    grid = checkpoint_state.grid(prep, state, 0)
    np.testing.assert_array_equal(grid["who"], np.arange(6).reshape(2, 3))
    back = checkpoint_state.sweep_state(prep, {"group_0": grid}, {"epoch": 1, "history": [{}]})
    for u, restored in zip(fake, back.units):
        np.testing.assert_array_equal(np.asarray(restored["who"]), u["who"])


def test_state_packs_into_one_array_per_dtype_and_back():
    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False]),
            "c": (np.float32(7.0) * np.ones((2, 1, 2), np.float32), np.array([3, 4], np.int32))}
    packed = checkpoint_io.pack(tree)
    assert {k: v.tolist() for k, v in packed.items()} == {
        "float32": [0, 1, 2, 3, 4, 5, 7, 7, 7, 7], "bool": [True, False], "int32": [3, 4]}
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)
    assert {k: (v.shape, v.dtype) for k, v in checkpoint_io.packed_target(abstract).items()} == {
        k: (v.shape, v.dtype) for k, v in packed.items()}
    back = checkpoint_io.unpack(packed, abstract)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="packed float32 array of shape"):
        checkpoint_io.unpack(dict(packed, float32=packed["float32"][:-1]), abstract)


def test_unwritable_checkpoint_dir_is_refused_before_anything_else(sub, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    args = ["sweep", *FLAGS, "--data-dir", str(tmp_path / "no_data_here"), "--out", str(tmp_path / "run"),
            "--checkpoint-dir", str(blocker / "ckpt")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"jaxmlp: error: checkpoint directory {blocker / 'ckpt'} cannot be made: "
                          f"{blocker} is a file;")
    assert "\n" not in err and not (tmp_path / "run").exists()


# ---- using a trained member --------------------------------------------------------------------------

def test_load_and_evaluate_member_give_the_runs_test_numbers(sub, reference, capsys):
    res = reference.results
    stopped = next(m["index"] for m in res.members if m["stopped_early"])
    for k in (0, stopped):
        assert checkpoint.evaluate_member(reference.out, k, reference.ckpt) == res.members[k]["test"]

    assert cli.main(["evaluate", str(reference.out), "--member", str(stopped),
                     "--checkpoint-dir", str(reference.ckpt)]) == 0
    test = res.members[stopped]["test"]
    assert capsys.readouterr().out.strip() == (f"member {stopped}: test loss {test['loss']:.4f}, "
                                               f"test accuracy {test['accuracy']:.4f}")

    # load: the best epoch's variables (the member stopped early), ready for models.apply.
    variables, hparams = checkpoint.load_member(reference.out, stopped, reference.ckpt)
    assert hparams == res.members[stopped]["hparams"]
    x = read_idx(sub.data / "t10k-images-idx3-ubyte.gz")[..., None].astype(np.float32) / 255.0
    y = read_idx(sub.data / "t10k-labels-idx1-ubyte.gz")
    model = models.MLP(hidden=(16,))
    logits, _ = models.apply(model, variables, x, train=False)
    logp = jax.nn.log_softmax(logits)
    assert float((np.argmax(logits, -1) == y).mean()) == pytest.approx(test["accuracy"], abs=1e-6)
    assert float(-logp[np.arange(len(y)), y].mean()) == pytest.approx(test["loss"], rel=1e-5)

    with pytest.raises(UsageError, match="--member 4 is not in"):
        checkpoint.load_member(reference.out, 4, reference.ckpt)
    assert checkpoint.default_dir("runs/abc/") == Path("runs/abc/checkpoints")


def test_checkpoint_saved_on_two_devices_restores_on_one(sub, tmp_path, capsys):
    if len(jax.local_devices()) != 1:
        pytest.skip("this process must see one device")
    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    # 3 members over 2 devices: padded to 4 there; --checkpoint-every 5 still saves the last epoch.
    flags = ["--hidden", "16", "--dropout", "0,0.2,0.4", "--epochs", "2", "--batch-size", "32",
             "--train-fraction", "0.3", "--devices", "2", "--checkpoint-every", "5", "--quiet", "--no-plots"]
    args = sweep_args(sub, out, ckpt, flags=flags)
    proc = run(sub, args, env=dict(sub.env, XLA_FLAGS="--xla_force_host_platform_device_count=2"), plain=True)
    assert proc.returncode == 0, proc.stderr
    two = Results.read(out)
    assert len(two.devices) == 2 and complete_steps(ckpt) == [2]

    for k in range(3):
        got = checkpoint.evaluate_member(out, k, ckpt)
        assert got["accuracy"] == pytest.approx(two.members[k]["test"]["accuracy"], abs=1e-6)
        assert got["loss"] == pytest.approx(two.members[k]["test"]["loss"], rel=1e-5)

    # Resuming the finished run on one device (--devices only lays members out: it may change):
    # restored, nothing retrained, the same records.
    config = dataclasses.replace(config_of(args), devices=None)
    one = run_sweep(config, tmp_path / "again", progress=False, checkpoint_dir=ckpt, plots=False)
    assert "resuming after epoch 2" in capsys.readouterr().err
    assert one.history == two.history
    for a, b in zip(one.members, two.members, strict=True):
        assert (a["best_epoch"], a["epochs_run"], a["val"]) == (b["best_epoch"], b["epochs_run"], b["val"])
        assert a["test"]["loss"] == pytest.approx(b["test"]["loss"], rel=1e-5)


# ---- the bar: 22 members, 6 epochs, killed at 5 points -----------------------------------------

BAR_FLAGS = ["--hidden", "16", "--dropout", "0.01:0.99:22", "--epochs", str(EPOCHS), "--patience", "2",
             "--batch-size", "32", "--chunk-size", "11", "--train-fraction", "0.3", "--quiet", "--no-plots"]


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["mid:2", "save:2", "mid:4", "save:5", "mid:6"])
def test_22_member_sweep_killed_anywhere_resumes_exactly(sub, tmp_path_factory, hook):
    """SIGKILL a 22-member, 6-epoch sweep (two chunks of 11, so "mid-epoch" is between them) in the middle
    of an epoch or of a checkpoint's write; the rerun trains no epoch that a complete checkpoint holds and
    ends with results.json and history.jsonl equal to an uninterrupted run's, field by field."""
    cache = tmp_path_factory.getbasetemp() / "bar_reference"
    if not (cache / "run" / "results.json").exists():
        proc = run(sub, sweep_args(sub, cache / "run", cache / "ckpt", flags=BAR_FLAGS), plain=True)
        assert proc.returncode == 0, proc.stderr
    tmp = tmp_path_factory.mktemp("bar")
    out, ckpt = tmp / "run", tmp / "ckpt"
    args = sweep_args(sub, out, ckpt, flags=BAR_FLAGS)
    run_killed(sub, args, hook, tmp / "killed.log", tmp / "marker")
    saved = complete_steps(ckpt) if ckpt.exists() else []
    proc = run(sub, args, log=tmp / "resumed.log")
    assert proc.returncode == 0, proc.stderr
    assert epochs_trained(tmp / "resumed.log") == list(range(max(saved, default=0) + 1, EPOCHS + 1))
    assert len(Results.read(out).members) == 22
    assert_same_run(out, cache / "run")


@pytest.mark.slow
def test_killed_during_a_save_that_then_fails_verification_resumes_exactly(sub, reference, tmp_path):
    """SIGKILL right after epoch 4's checkpoint was saved, its array then damaged (data that never reached
    the disk): the rerun finds it fails verification, says so in one warning line, resumes from
    epoch 3 and ends exactly like the uninterrupted run."""
    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    args = sweep_args(sub, out, ckpt)
    run_killed(sub, args, "torn:4", tmp_path / "killed.log", tmp_path / "marker")
    assert complete_steps(ckpt) == [3, 4]      # the save was complete (the oldest deleted), then damaged
    proc = run(sub, args, log=tmp_path / "resumed.log")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"jaxmlp: warning: the checkpoint of epoch 4 in {ckpt} failed verification (epoch 4: the float32 array "
        "of group_")
    assert epochs_trained(tmp_path / "resumed.log") == [4, 5, 6]
    assert_same_run(out, reference.out)
    assert listing(ckpt) == ["4.unreadable", "5", "6"]
