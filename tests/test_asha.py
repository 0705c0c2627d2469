"""Asynchronous successive halving in one sweep: a fixed number of members train, stops free places that
waiting members take, decisions follow the rule computed by hand from the history, a resume is exact."""

from __future__ import annotations

import numpy as np
import pytest

import jaxmlp
from interrupt import KillAfter, Killed
from jaxmlp.errors import UsageError
from jaxmlp.search.asha import ASHA

SLOTS, ETA, TOP = 8, 3, 9


def config(data_dir):
    return jaxmlp.SweepConfig(data_dir=str(data_dir), hidden=[(8,)], batch_size=[50], epochs=12,
                              lr_schedule="constant", points=[{"lr": float(v)} for v in np.geomspace(1e-4, 3e-1, 24)])


def asha():
    return ASHA(slots=SLOTS, eta=ETA, min_epochs=1, max_epochs=TOP)


@pytest.fixture(scope="module")
def run(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("asha") / "run"
    return jaxmlp.sweep(config(synthetic_dir), out, progress=False, callbacks=[asha()], repack=True)


def started_and_trained(res):
    """Per member: the epoch before its first trained one, and its trained epochs (from the history)."""
    out = {}
    for i in range(len(res.members)):
        epochs = [h["epoch"] for h in res.history if h["val_loss"][i] is not None]
        out[i] = (epochs[0] - 1 if epochs else None, len(epochs))
    return out


def test_the_batch_stays_full_while_members_wait(run):
    trained = [sum(v is not None for v in h["val_loss"]) for h in run.history]
    first = started_and_trained(run)
    last_start = max(s for s, _ in first.values() if s is not None)
    assert all(n == SLOTS for n in trained[:last_start + 1])     # every epoch until the last start: full
    assert all(n <= SLOTS for n in trained)
    assert all(s is not None for s, _ in first.values())        # every waiting member got a place
    assert run.timing["member_epochs"] == sum(n for _, n in first.values())


def test_decisions_follow_the_rule_computed_by_hand(run):
    first = started_and_trained(run)
    rungs = [1, 3]
    at = {k: [] for k in range(len(rungs))}   # (epoch reached, value, member) per rung
    for i, (s, n) in first.items():
        for k, r in enumerate(rungs):
            if n >= r:
                at[k].append((s + r, run.history[s + r - 1]["val_accuracy"][i], i))
    for i, (s, n) in first.items():
        m = run.members[i]
        if n == TOP:
            assert m["status"] == "finished"
            continue
        k = rungs.index(n)
        # The competitors: members that reached rung k by the same epoch, ranked by value then index.
        seen = sorted([(v, j) for e, v, j in at[k] if e <= s + n], key=lambda t: (-t[0], t[1]))
        kept = {j for _, j in seen[:max(1, len(seen) // ETA)]}
        assert i not in kept and m["status"] == "pruned" and m["rung"] == k and m["epochs_run"] == n
        if s > 0:
            assert m["started_epoch"] == s


def test_a_killed_asha_sweep_resumes_exactly(run, synthetic_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Killed):
        jaxmlp.sweep(config(synthetic_dir), out, progress=False, callbacks=[asha(), KillAfter(4)], repack=True)
    resumed = jaxmlp.sweep(config(synthetic_dir), out, progress=False, callbacks=[asha()], repack=True)
    assert resumed.members == run.members
    assert resumed.history == run.history


@pytest.mark.parametrize("kwargs, message", [
    (dict(slots=0), "at least 1 slot"),
    (dict(slots=4, eta=1), "eta must be at least 2"),
    (dict(slots=4, min_epochs=0), "min_epochs must be at least 1"),
    (dict(slots=4, metric="accuracy"), "not a history metric"),
])
def test_bad_settings_are_refused_in_one_line(kwargs, message):
    with pytest.raises(UsageError, match=message):
        ASHA(**kwargs)


def test_the_command_line_runs_asha(synthetic_dir, tmp_path, capsys):
    from jaxmlp import cli
    from jaxmlp.results import Results

    out = tmp_path / "run"
    argv = ["sweep", "--data-dir", str(synthetic_dir), "--hidden", "8", "--lr", "1e-4:3e-1:12:log", "--epochs", "4",
            "--asha", "4", "--lr-schedule", "constant", "--out", str(out), "--quiet", "--no-plots"]
    assert cli.main(argv) == 0
    res = Results.read(out)
    assert max(sum(v is not None for v in h["val_loss"]) for h in res.history) == 4
    assert {m["status"] for m in res.members} <= {"pruned", "finished", "waiting"}
    assert cli.main([*argv[:-4], "--asha", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "at least 1 slot" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
