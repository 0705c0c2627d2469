"""Optuna drives a sweep: batches train as one job, pruned trials stop, and a killed search resumes exactly.

Equalities between two paths: a search killed (in a batch's sweep, inside a study step's journal writes,
in the middle of an ask) and run again against the uninterrupted one, trial for trial (params, states,
values, intermediate values, the pruner's and samplers' attributes); two searches with one seed; the
successive-halving decisions against the rule worked by hand from the reported values.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

import jaxmlp  # noqa: E402
from jaxmlp.callbacks import Callback  # noqa: E402
from jaxmlp.errors import UsageError  # noqa: E402
from jaxmlp.search import optuna_setup as setup  # noqa: E402
from jaxmlp import cli as jaxmlp_cli  # noqa: E402
from jaxmlp.search import search_cli  # noqa: E402
from jaxmlp.search.optuna_driver import _ask, _tell, optuna_search  # noqa: E402
from jaxmlp.search.optuna_steps import Journal, trial_json  # noqa: E402

SPACE = {"lr": (1e-3, 1e-1), "dropout": (0.0, 0.5)}


def config(data_dir) -> jaxmlp.SweepConfig:
    return jaxmlp.SweepConfig(data_dir=str(data_dir), hidden=[(8,)], batch_size=[50], epochs=3)


def search(data_dir, out, **kw):
    kw = {"n_trials": 16, "batch": 8, "progress": False, **kw}
    return optuna_search(config(data_dir), SPACE, out=out, **kw)


def journal_trials(res) -> list[dict]:
    """Every trial as the study holds it (no dates): params, state, values, intermediate values, attrs."""
    return [trial_json(t) for t in res.study.get_trials(deepcopy=False)]


def rows(res) -> list[dict]:
    return [{k: v for k, v in r.items()} for r in res.trials]


@pytest.fixture(scope="module")
def plain(synthetic_dir, tmp_path_factory):
    return search(synthetic_dir, tmp_path_factory.mktemp("plain") / "search")


@pytest.fixture(scope="module")
def halving(synthetic_dir, tmp_path_factory):
    return search(synthetic_dir, tmp_path_factory.mktemp("halving") / "search", pruner="halving")


# ---- one batch, one job ---------------------------------------------------------------------------------

def test_a_batch_trains_as_one_job_and_compiles_once(plain):
    out = plain.out
    assert [b["trials"] for b in plain.timing["batches"]] == [list(range(8)), list(range(8, 16))]
    # Each batch is one 8-member sweep whose members are the batch's trials, in order.
    for b in range(2):
        members = jaxmlp.read(out / "batches" / f"{b:03d}").members
        assert len(members) == 8
        for m, row in zip(members, plain.trials[8 * b:8 * b + 8]):
            assert {k: m["hparams"][k] for k in SPACE} == row["params"]
    # The second batch runs the first batch's compiled epoch: nothing compiled again.
    second = plain.timing["batches"][1]
    assert second["compile_s"] == 0.0 and second["compiled_epochs"] == 1
    assert plain.timing["member_epochs"] == plain.timing["member_epochs_full"] == 16 * 3


def test_each_trial_is_told_its_members_numbers(plain):
    assert all(r["state"] == "COMPLETE" and r["status"] == "finished" for r in plain.trials)
    for b in range(2):
        res = jaxmlp.read(plain.out / "batches" / f"{b:03d}")
        for i, (m, row) in enumerate(zip(res.members, plain.trials[8 * b:8 * b + 8])):
            reported = [h["val_accuracy"][i] for h in res.history]
            assert row["intermediate"] == {str(e + 1): v for e, v in enumerate(reported)}
            # The value: the final weights' validation accuracy, the last value reported.
            assert row["value"] == m["val"]["accuracy"] == reported[-1]
    best = max((r for r in plain.trials), key=lambda r: r["value"])
    assert (plain.best_trial, plain.best_value, plain.best_params) == (best["number"], best["value"], best["params"])
    assert plain.study.best_trial.number == plain.best_trial


def test_search_json_and_optuna_figures(plain):
    saved = json.loads((plain.out / "search.json").read_text())
    assert saved["complete"] and saved["n_trials"] == 16 and saved["direction"] == "maximize"
    assert saved["settings"]["space"] == {"lr": {"range": [1e-3, 1e-1], "log": True},
                                          "dropout": {"range": [0.0, 0.5], "log": False}}
    assert saved["settings"]["sampler"] == "tpe" and saved["settings"]["pruner"] == "none"
    assert saved["trials"] == json.loads(json.dumps(plain.trials))
    assert saved["best"] == {"number": plain.best_trial, "value": plain.best_value, "params": plain.best_params}
    assert saved["timing"]["member_epochs_full"] == 48
    for name in ("optimization_history", "intermediate_values", "param_importances", "parallel_coordinate",
                 "contour"):
        assert (plain.out / "plots" / f"{name}.png").stat().st_size > 1000, name


def test_same_seed_same_trials_another_seed_others(plain, synthetic_dir, tmp_path):
    again = search(synthetic_dir, tmp_path / "again", plots=False)
    assert journal_trials(again) == journal_trials(plain)
    other = search(synthetic_dir, None, seed=1, n_trials=8)
    assert [t["params"] for t in journal_trials(other)] != [t["params"] for t in journal_trials(plain)[:8]]
    assert other.out is None and len(other.study.trials) == 8   # a temporary run: the study comes in memory


# ---- pruning --------------------------------------------------------------------------------------------

def test_pruned_trials_stop_training_and_are_pruned_in_the_study(halving):
    pruned = [r for r in halving.trials if r["state"] == "PRUNED"]
    assert pruned and len(pruned) < 16
    for r in pruned:
        assert r["status"] == "pruned" and r["epochs_run"] == r["pruned_step"] == 1
        assert r["value"] == r["intermediate"]["1"] and list(r["intermediate"]) == ["1"]
    for b in range(2):
        members = jaxmlp.read(halving.out / "batches" / f"{b:03d}").members
        for m, r in zip(members, halving.trials[8 * b:8 * b + 8]):
            assert m["status"] == ("pruned" if r["state"] == "PRUNED" else "finished")
            if r["state"] == "PRUNED":
                assert m["step"] == 1
    done = sum(r["epochs_run"] for r in halving.trials)
    assert halving.timing["member_epochs"] == done < 48


def test_successive_halving_decides_as_worked_by_hand(halving):
    # min_resource 1, reduction factor 4: one rung, after epoch 1. A trial goes on when its epoch-1 value
    # is in the top quarter (at least the best) of those that reached the rung before it, itself included,
    # in trial order (a batch's trials are asked about in member order).
    seen, expected = [], []
    for r in halving.trials:
        v = r["intermediate"]["1"]
        seen.append(v)
        k = max(len(seen) // 4, 1)
        expected.append("COMPLETE" if v >= sorted(seen)[-k] else "PRUNED")
    assert [r["state"] for r in halving.trials] == expected


# ---- resuming ----------------------------------------------------------------------------------------

class Killed(Exception):
    pass


class KillAt(Callback):
    """Raise at `hook` of epoch `epoch` in batch `batch` (batches counted by their first epoch)."""

    def __init__(self, batch: int, epoch: int, hook: str):
        self.at, self.hook, self.batch = (batch, epoch), hook, -1

    def on_epoch_start(self, epoch):
        self.batch += epoch == 1
        self._check("on_epoch_start", epoch)

    def on_population(self, population):
        self._check("on_population", population.epoch)

    def on_checkpoint_end(self, epoch):
        self._check("on_checkpoint_end", epoch)

    def _check(self, hook, epoch):
        if hook == self.hook and (self.batch, epoch) == self.at:
            raise Killed


@pytest.mark.parametrize("interval", [0.0, 30.0])
@pytest.mark.parametrize("kill", [(0, 2, "on_epoch_start"), (1, 1, "on_population"), (1, 1, "on_checkpoint_end")])
def test_a_search_killed_in_a_batch_resumes_exactly(halving, synthetic_dir, tmp_path, kill, interval):
    """Resumed from the batch's checkpoint of the last epoch (interval 0: one after every epoch), or, where a
    batch is shorter than the interval between saves (the default), from its start."""
    out = tmp_path / "search"
    with pytest.raises(Killed):
        search(synthetic_dir, out, pruner="halving", plots=False, callbacks=[KillAt(*kill)],
               checkpoint_interval_s=interval)
    saved = sorted(p.name for p in (out / "batches" / f"{kill[0]:03d}" / "checkpoints").glob("[0-9]*"))
    assert saved == ([] if interval else [str(e) for e in range(1, kill[1] + (kill[2] == "on_checkpoint_end"))])
    resumed = search(synthetic_dir, out, pruner="halving", plots=False, checkpoint_interval_s=interval)
    assert journal_trials(resumed) == journal_trials(halving)
    assert rows(resumed) == rows(halving)


@pytest.mark.parametrize("method, call", [
    ("set_trial_state_values", 2),    # in batch 0's epoch-1 step, between two pruned trials' tells
    ("set_trial_system_attr", 3),     # a rung marked, the trial's prune not yet told
    ("create_new_trial", 11),         # in the middle of asking batch 1
    ("set_trial_state_values", 10),   # later, in batch 1
])
def test_a_search_killed_between_two_journal_writes_resumes_exactly(halving, synthetic_dir, tmp_path, monkeypatch,
                                                                  method, call):
    original = getattr(optuna.storages.JournalStorage, method)
    calls = {"n": 0}

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise Killed
        return original(self, *args, **kwargs)

    out = tmp_path / "search"
    monkeypatch.setattr(optuna.storages.JournalStorage, method, dies)
    with pytest.raises(Killed):
        search(synthetic_dir, out, pruner="halving", plots=False)
    monkeypatch.setattr(optuna.storages.JournalStorage, method, original)
    resumed = search(synthetic_dir, out, pruner="halving", plots=False)
    assert journal_trials(resumed) == journal_trials(halving)
    assert rows(resumed) == rows(halving)


def test_a_finished_search_reruns_without_training(halving, synthetic_dir, monkeypatch):
    import jaxmlp.search.optuna_driver as driver

    monkeypatch.setattr(driver, "_sweep", lambda *a, **k: pytest.fail("trained again"))
    again = search(synthetic_dir, halving.out, pruner="halving", plots=False)
    assert journal_trials(again) == journal_trials(halving)


def test_resuming_another_search_is_refused(plain, synthetic_dir):
    with pytest.raises(UsageError, match=r"holds another search \(different pruner\)"):
        search(synthetic_dir, plain.out, pruner="median")
    with pytest.raises(UsageError, match="batch 1 has 8 trials, not 4"):
        search(synthetic_dir, plain.out, n_trials=12)


# ---- every sampler's ask depends on the study alone -------------------------------------------------------

@pytest.mark.parametrize("name", ["tpe", "cmaes", "qmc", "random", "gp"])
def test_each_sampler_asks_alike_after_a_kill(name, tmp_path, monkeypatch):
    if name == "cmaes":
        pytest.importorskip("cmaes")
    if name == "gp":
        pytest.importorskip("torch")
    space = setup.settle_space({"lr": (1e-4, 1e-1), "dropout": (0.0, 0.6), "l2": "choice:0.0001,0.001"})
    make = setup.sampler_factory(name, 7, 4)

    def score(p):   # a smooth made-up objective
        return -abs(math.log10(p["lr"]) + 2.5) - p["dropout"] + p["l2"]

    def run(folder: Path) -> list[dict]:
        j = Journal(folder / "journal.log", "maximize")
        for b in range(4):
            numbers = j.step(folder / f"ask{b}.json", lambda st, sto, sid: _ask(st, sto, sid, make, space, 4, b))
            outcomes = [(n, score(j.trials()[n].params), "finished") for n in numbers]
            j.step(folder / f"tell{b}.json", lambda st, sto, sid: _tell(st, sto, sid, make, outcomes))
        trials = [trial_json(t) for t in j.trials()]
        for t in trials:   # CMA-ES pickles its optimizer with uninitialised memory in it (cmaes's np.empty)
            t["system_attrs"] = {k: v for k, v in t["system_attrs"].items() if not k.startswith("cma:optimizer")}
        return trials

    straight = run(tmp_path / "a")
    original = optuna.storages.JournalStorage.create_new_trial
    calls = {"n": 0}

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:   # in the middle of asking the second batch
            raise Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optuna.storages.JournalStorage, "create_new_trial", dies)
    with pytest.raises(Killed):
        run(tmp_path / "b")
    monkeypatch.undo()
    assert run(tmp_path / "b") == straight
    assert len({json.dumps(t["params"]) for t in straight}) == 16


def test_a_journal_line_cut_by_a_kill_is_dropped(tmp_path):
    j = Journal(tmp_path / "journal.log", "maximize")
    make = setup.sampler_factory("random", 0, 2)
    j.step(tmp_path / "ask.json", lambda st, sto, sid: _ask(st, sto, sid, make, setup.settle_space(SPACE), 2, 0))
    with open(tmp_path / "journal.log", "ab") as f:
        f.write(b'{"op_code": 5, "trial_id"')   # a write the kill cut short
    again = Journal(tmp_path / "journal.log", "maximize")
    assert [t.number for t in again.trials()] == [0, 1]
    again.storage.set_trial_user_attr(0, "after", 1)   # and the journal takes new records
    assert Journal(tmp_path / "journal.log", "maximize").trials()[0].user_attrs["after"] == 1


# ---- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, words", [
    ({"sampler": "annealing"}, "unknown sampler 'annealing'"),
    ({"sampler": "random_instance"}, "give the sampler as a function seed -> sampler"),
    ({"pruner": "patient"}, "unknown pruner 'patient'"),
    ({"metric": "test_accuracy"}, "unknown metric"),
    ({"n_trials": 0}, "1..1000000 trials"),
    ({"checkpoint_interval_s": -1}, "--checkpoint-interval -1 is negative"),
])
def test_bad_arguments_are_one_line_usage_errors(synthetic_dir, tmp_path, kwargs, words):
    if kwargs.get("sampler") == "random_instance":
        kwargs = {"sampler": optuna.samplers.RandomSampler()}
    with pytest.raises(UsageError, match=words):
        search(synthetic_dir, tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("change, words", [
    ({"seed": [0, 1]}, "give one --seed"),
    ({"hidden": [(8,), (16,)]}, "one value of --hidden"),
    ({"lr": [0.01]}, "lr is both searched and given fixed"),
    ({"momentum": [0.5, 0.9]}, "momentum has 2 values"),
    ({"folds": 3}, "cross-validation"),
])
def test_configs_a_search_cannot_drive_are_refused(synthetic_dir, tmp_path, change, words):
    kw = {"data_dir": str(synthetic_dir), "hidden": [(8,)], "epochs": 1, **change}
    with pytest.raises(UsageError, match=words):
        optuna_search(jaxmlp.SweepConfig(**kw), SPACE, 4, out=tmp_path / "s", progress=False)


# ---- the command line ------------------------------------------------------------------------------------

def cli(argv, capsys) -> tuple[int, str, str]:
    rc = jaxmlp_cli.main(["search", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv, words", [
    (["--lr", "1e-3:1e-1", "--bogus"], "unrecognized arguments: --bogus"),
    (["--lr", "1e-3:1e-1", "--sampler", "anneal"], "invalid choice: 'anneal'"),
    (["--lr", "1e-3:1e-1", "--trials", "many"], "invalid int value: 'many'"),
    (["--lr", "1e-3"], "nothing to search"),
    (["--lr", "1e-3:1e-1", "--momentum", "0.5,0.9"], "--momentum '0.5,0.9': give a range to search"),
    (["--lr", "1e-3:1e-1", "--batch-size", "32,64"], "--batch-size '32,64': a search trains one kind of model"),
    (["--lr", "1e-3:1e-1", "--dropout", "0:1"], "--dropout 1 is outside [0, 1)"),
    (["--lr", "1e-3:1e-1", "--checkpoint-interval", "-5"], "--checkpoint-interval -5 is negative"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, words, tmp_path, capsys):
    rc, out, err = cli([*argv, "--out", str(tmp_path / "s")], capsys)
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_cli_without_optuna_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)   # import optuna now raises ImportError
    rc, out, err = cli(["--lr", "1e-3:1e-1", "--out", str(tmp_path / "s")], capsys)
    assert rc == 2 and err.strip() == "jaxmlp: error: the search needs optuna: pip install 'jaxmlp[search]'"


def test_cli_search_end_to_end(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "s"
    rc, stdout, err = cli(["--trials", "8", "--batch", "8", "--lr", "1e-3:1e-1", "--dropout", "0:0.5",
                           "--l2", "1e-4", "--sampler", "qmc", "--hidden", "8", "--batch-size", "50",
                           "--epochs", "2", "--data-dir", str(synthetic_dir), "--out", str(out), "--quiet",
                           "--no-plots"], capsys)
    assert rc == 0, err
    saved = json.loads((out / "search.json").read_text())
    best = saved["best"]
    assert stdout.startswith("8 trials (8 complete) in ") and f"(trial {best['number']}: " in stdout
    assert saved["settings"]["sampler"] == "qmc" and saved["settings"]["config"]["hparams"] == {"l2": [1e-4]}
    assert [t["number"] for t in saved["trials"]] == list(range(8))


def test_cli_lists_what_the_setup_module_knows():
    assert search_cli.SAMPLERS == setup.SAMPLERS and search_cli.PRUNERS == setup.PRUNERS


# ---- a real kill, at random moments ----------------------------------------------------------------------

SCRIPT = """
import sys
from pathlib import Path
import jaxmlp
from jaxmlp.search import optuna_search
cfg = jaxmlp.SweepConfig(data_dir=sys.argv[1], hidden=[(8,)], batch_size=[50], epochs=3)
optuna_search(cfg, {"lr": (1e-3, 1e-1), "dropout": (0.0, 0.5)}, 24, batch=8, out=Path(sys.argv[2]),
              pruner="halving", progress=False, plots=False, checkpoint_interval_s=float(sys.argv[3]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("interval", ["0", "30"])   # resumed mid-batch from checkpoints / batches start over
def test_a_search_killed_at_random_moments_ends_as_an_uninterrupted_one(synthetic_dir, tmp_path, interval):
    def start(out):
        return subprocess.Popen([sys.executable, "-c", SCRIPT, str(synthetic_dir), str(out), interval],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    # A first search fills the compile cache, so the timed one and the restarts start alike (timed against a
    # search that compiled, restarts that load their programs would finish before any kill).
    first = start(tmp_path / "first")
    assert first.wait(timeout=600) == 0, first.stderr.read().decode()[-2000:]
    t0 = time.perf_counter()
    straight = start(tmp_path / "straight")
    assert straight.wait(timeout=600) == 0, straight.stderr.read().decode()[-2000:]
    duration = time.perf_counter() - t0
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    killed = tmp_path / "killed"
    kills = 0
    for _ in range(4):   # killed 4 times at random (a restart pays its start and compile again), then let be
        p = start(killed)
        try:
            p.wait(timeout=float(rng.uniform(0.2, 0.9)) * duration)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
    assert kills >= 1
    p = start(killed)
    assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]
    a = json.loads((tmp_path / "straight" / "search.json").read_text())["trials"]
    b = json.loads((killed / "search.json").read_text())["trials"]
    assert b == a
