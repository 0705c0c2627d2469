"""Several hosts, simulated: the same ``jaxmlp sweep`` in 2 processes under ``jax.distributed`` on this
machine (one CPU device each, gloo collectives over 127.0.0.1) trains the same numbers as one process with
2 devices, and their checkpoints move between the two layouts.

Bit-equal, not close: the member mesh is built from the global device list, so both layouts compile the
same partitioned program (2 devices, one member shard each) and run the same float operations; only the
place of the second device differs. Measured so, and asserted so (``==`` on every number).

Every process has a timeout; a process that fails leaves its peers waiting for it (jax then ends them
after its own timeouts), so a test that fails kills each process group it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

# Imported before cli.main runs: main() sets XLA_FLAGS only while jax is not imported, and these
# in-process tests must not change the device layout of the whole test session.
import jax  # noqa: F401
import pytest

from jaxmlp import cli, hosts, members
from jaxmlp.errors import UsageError
from jaxmlp.results import Results

FLAGS = ["sweep", "--hidden", "16", "--dropout", "0,0.2,0.4,0.6", "--epochs", "2", "--batch-size", "32",
         "--train-fraction", "0.3", "--no-plots"]
TIMEOUT_S = 120


# ---- helpers -----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_with(devices: int) -> dict[str, str]:
    """This environment with `devices` CPU devices per process and no cluster for jax to detect."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))}
    return dict(env, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def run_together(commands: list[list[str]], env: dict[str, str]) -> list[SimpleNamespace]:
    """Start the commands at once, each in its own process group; wait for all within one deadline and
    kill every group still there (on timeout, or if this test fails)."""
    deadline = time.monotonic() + TIMEOUT_S
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for c in commands]
    done = []
    try:
        for p in procs:
            try:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                out, err = p.communicate()
                err += f"\n[killed after {TIMEOUT_S} s]"
            done.append(SimpleNamespace(returncode=p.returncode, stdout=out, stderr=err))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return done


def jaxmlp(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxmlp", *args]


def sweep_in_two_processes(data: Path, out: Path, ckpt: Path, *extra: str) -> list[SimpleNamespace]:
    """The same sweep in processes 0 and 1. Process 1 is given its own --out (that it must not write)."""
    port = free_port()
    commands = [jaxmlp(*FLAGS, "--data-dir", str(data), "--checkpoint-dir", str(ckpt), *extra,
                       "--out", str(out if i == 0 else out.with_name(out.name + "_p1")),
                       "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i))
                for i in range(2)]
    procs = run_together(commands, env_with(1))
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i}: {p.stderr[-3000:]}"
    return procs


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """results.json (all but timing, devices, command, versions) and history.jsonl exactly equal."""
    got, want = Results.read(run_dir), Results.read(reference)
    assert got.config == want.config
    assert len(got.members) == len(want.members) == 4
    for g, w in zip(got.members, want.members, strict=True):
        assert g == w, w["index"]
    assert (run_dir / "history.jsonl").read_text() == (reference / "history.jsonl").read_text()


def complete_steps(ckpt: Path) -> list[int]:
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def runs(synthetic_dir, tmp_path_factory) -> SimpleNamespace:
    """The sweep in 2 processes (1 device each), then in 1 process with 2 devices: the reference."""
    root = tmp_path_factory.mktemp("distributed")
    two = sweep_in_two_processes(synthetic_dir, root / "two", root / "two_ckpt")
    ref = subprocess.run(jaxmlp(*FLAGS, "--quiet", "--data-dir", str(synthetic_dir), "--out", str(root / "one"),
                                "--checkpoint-dir", str(root / "one_ckpt")),
                         env=env_with(2), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert ref.returncode == 0, ref.stderr
    return SimpleNamespace(root=root, data=synthetic_dir, two=two)


# ---- several processes -------------------------------------------------------------------------------

def test_two_processes_train_exactly_what_one_process_trains(runs):
    root = runs.root
    assert_same_run(root / "two", root / "one")
    assert len(Results.read(root / "two").devices) == len(Results.read(root / "one").devices) == 2
    # Only process 0 wrote a run directory, showed the layout and progress, and printed the summary;
    # process 1 printed nothing at all.
    primary, other = runs.two
    assert not (root / "two_p1").exists()
    assert sorted(p.name for p in (root / "two").iterdir()) == [
        "history.jsonl", "results.csv", "results.json", "variables.npz"]
    assert (other.stdout, other.stderr) == ("", "")
    assert "sharded over 2 cpu device(s) in 2 processes" in primary.stderr
    assert "2/2" in primary.stderr   # the progress bar at its end
    assert primary.stdout.startswith("4 member(s) on ") and primary.stdout.count("\n") == 1
    # The checkpoints are written once, by process 0, like a single process's.
    assert complete_steps(root / "two_ckpt") == complete_steps(root / "one_ckpt") == [1, 2]


def test_checkpoint_of_two_processes_evaluates_in_one(runs):
    """One process with 2 devices recomputes every member's test numbers from the 2 processes'
    checkpoint: exactly the run's."""
    run_dir, ckpt = runs.root / "two", runs.root / "two_ckpt"
    script = (f"import json, sys; from jaxmlp import checkpoint, cli\n"
              f"cli.main(['evaluate', {str(run_dir)!r}, '--member', '3', '--checkpoint-dir', {str(ckpt)!r}])\n"
              f"print(json.dumps([checkpoint.evaluate_member({str(run_dir)!r}, k, {str(ckpt)!r}) for k in range(4)]))")
    proc = subprocess.run([sys.executable, "-c", script], env=env_with(2), capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    line, numbers = proc.stdout.strip().splitlines()
    tests = [m["test"] for m in Results.read(run_dir).members]
    assert json.loads(numbers) == tests
    assert line == f"member 3: test loss {tests[3]['loss']:.4f}, test accuracy {tests[3]['accuracy']:.4f}"


def test_two_processes_resume_a_checkpoint_of_one(runs, tmp_path):
    """2 processes resume from the 1-process run's checkpoint of epoch 1 (restored into the global
    mesh), train epoch 2, save it together, and end exactly like the uninterrupted 1-process run."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(runs.root / "one_ckpt", ckpt)
    shutil.rmtree(ckpt / "2")
    primary, other = sweep_in_two_processes(runs.data, tmp_path / "run", ckpt, "--quiet")
    assert primary.stderr == (f"jaxmlp: resuming after epoch 1 from {ckpt} (this sweep's checkpoints; "
                              "--new-run starts over)\n")
    assert (other.stdout, other.stderr) == ("", "")
    assert_same_run(tmp_path / "run", runs.root / "one")
    assert complete_steps(ckpt) == [1, 2]


def test_a_study_in_two_processes_finds_what_one_process_finds(synthetic_dir, tmp_path):
    """A reference study (quick, one epoch) under jax.distributed: process 0 writes the summary and its
    numbers equal a one-process run's; process 1 writes nothing and prints nothing."""
    study = [sys.executable, "-m", "experiments.l1_vs_l2_weights", "--quick", "--data-dir", str(synthetic_dir),
             "--train-fraction", "1", "--epochs", "1", "--quiet"]
    one = subprocess.run([*study, "--out", str(tmp_path / "one")], env=env_with(2), capture_output=True,
                         text=True, timeout=TIMEOUT_S)
    assert one.returncode == 0, one.stderr
    port = free_port()
    primary, other = run_together(
        [[*study, "--out", str(tmp_path / ("two" if i == 0 else "two_p1")), "--coordinator", f"127.0.0.1:{port}",
          "--num-processes", "2", "--process-id", str(i)] for i in range(2)], env_with(1))
    assert primary.returncode == 0 and other.returncode == 0, primary.stderr[-3000:] + other.stderr[-3000:]
    got, want = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("two", "one"))
    assert got["numbers"] == want["numbers"] and got["numbers"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert not (tmp_path / "two_p1").exists()
    assert (other.stdout, other.stderr) == ("", "")
    assert "l1_vs_l2_weights: quick run in" in primary.stdout


def test_no_cluster_to_detect_is_one_line(tmp_path):
    """hosts.start() with no arguments lets jax look for a cluster; here there is none."""
    proc = subprocess.run([sys.executable, "-c", "from jaxmlp import hosts; hosts.start()"], env=env_with(1),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "jaxmlp.errors.UsageError: no cluster found to join (coordinator_address should be defined.); give the "
        "coordinator address, the number of processes and this process's id")


# ---- the three flags ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "sweep"])
@pytest.mark.parametrize("flags, message", [
    (["--coordinator", "127.0.0.1:8476"],
     "--num-processes and --process-id missing: --coordinator, --num-processes and --process-id go together "
     "(all three for a run of several processes, none for one)"),
    (["--num-processes", "2", "--process-id", "0"],
     "--coordinator missing: --coordinator, --num-processes and --process-id go together "
     "(all three for a run of several processes, none for one)"),
    (["--coordinator", "127.0.0.1", "--num-processes", "2", "--process-id", "0"],
     "--coordinator '127.0.0.1' is not HOST:PORT (for example 10.0.0.1:8476)"),
    (["--coordinator", "127.0.0.1:70000", "--num-processes", "2", "--process-id", "0"],
     "--coordinator '127.0.0.1:70000' is not HOST:PORT (for example 10.0.0.1:8476)"),
    (["--coordinator", ":8476", "--num-processes", "2", "--process-id", "0"],
     "--coordinator ':8476' is not HOST:PORT (for example 10.0.0.1:8476)"),
    (["--coordinator", "127.0.0.1:8476", "--num-processes", "0", "--process-id", "0"],
     "--num-processes must be at least 1, got 0"),
    (["--coordinator", "127.0.0.1:8476", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2 is outside 0..1 (--num-processes 2)"),
    (["--coordinator", "127.0.0.1:8476", "--num-processes", "2", "--process-id=-1"],
     "--process-id -1 is outside 0..1 (--num-processes 2)"),
])
def test_bad_process_flags_are_one_line(command, flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main([command, "--data-dir", str(tmp_path / "no_data"), "--out", str(out), *flags])
    captured = capsys.readouterr()
    assert (rc, captured.out, captured.err) == (2, "", f"jaxmlp: error: {message}\n")
    assert not out.exists()


def test_non_integer_process_count_is_one_line(tmp_path, capsys):
    rc = cli.main(["sweep", "--out", str(tmp_path / "run"), "--coordinator", "h:1", "--num-processes", "two",
                   "--process-id", "0"])
    assert rc == 2
    assert capsys.readouterr().err == ("jaxmlp: error: argument --num-processes: invalid int value: 'two'; "
                                       "see 'jaxmlp sweep --help'\n")


# ---- which devices, with several processes -------------------------------------------------------------

def fake_run(monkeypatch, processes: int, per_process: int) -> list[SimpleNamespace]:
    devices = [SimpleNamespace(id=p * 1000 + i, process_index=p) for p in range(processes) for i in range(per_process)]
    monkeypatch.setattr(hosts, "devices", lambda: devices)
    monkeypatch.setattr(hosts, "process_count", lambda: processes)
    return devices


def config(members_flags: list[str], devices: int | None = None):
    args = ["sweep", *members_flags] + ([] if devices is None else ["--devices", str(devices)])
    return cli.config_from_args(cli.build_parser().parse_args(args))


def test_devices_are_counted_over_all_processes_and_split_evenly(monkeypatch):
    d = fake_run(monkeypatch, processes=2, per_process=3)
    seven = ["--dropout", "0,0.1,0.2,0.3,0.4,0.5,0.6"]
    assert members.sweep_devices(config(seven)) == d                       # default: every device
    assert members.sweep_devices(config(seven, devices=4)) == [d[0], d[1], d[3], d[4]]   # 2 of each process
    assert members.sweep_devices(config(["--dropout", "0,0.1"])) == [d[0], d[3]]       # small: 1 of each
    with pytest.raises(UsageError, match=r"^--devices 3 does not split evenly over 2 processes: use a multiple of 2$"):
        members.sweep_devices(config(seven, devices=3))
    with pytest.raises(UsageError, match=r"^--devices 8 is not available: the 2 processes have 6 device\(s\)$"):
        members.sweep_devices(config(seven, devices=8))
