"""Successive halving and Hyperband: rungs, survivor counts and member-epochs computed by hand; survivors
checked against the history; the same decisions after a kill and resume; bracket sizes from Li et al.'s
table; the best-so-far curve on hand-made histories; one-line errors from Python and the command line.
"""

from __future__ import annotations

import collections
import json
import math

# Imported before cli.main runs (see test_cli.py): main() would otherwise set the host device count.
import jax  # noqa: F401
import numpy as np
import pytest

import jaxmlp
from jaxmlp import cli
from jaxmlp.callbacks import Callback
from jaxmlp.errors import UsageError
from jaxmlp.plots.compute import best_curve, best_vs_compute, save_compute_plot
from jaxmlp.results import Results
from jaxmlp.search.halving import Bracket, SuccessiveHalving, brackets, hyperband, rungs
from jaxmlp.search.points import sample

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LRS = [1e-4, 3e-3, 1e-1]


class Killed(Exception):
    pass


class KillAfter(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_checkpoint_end(self, epoch):
        if epoch == self.epoch:
            raise Killed


def grid27(data_dir, epochs: int = 9) -> jaxmlp.SweepConfig:
    # 3 lr × 3 dropout × 3 l2 = 27 points; the learning rates spread the accuracies apart.
    return jaxmlp.SweepConfig(data_dir=str(data_dir), hidden=[(8,)], batch_size=[50], epochs=epochs,
                              lr_schedule="constant", lr=LRS, dropout=[0.0, 0.2, 0.5], l2=[0.0, 1e-3, 1e-1])


@pytest.fixture(scope="module")
def halved(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("halved") / "run"
    # repack=True: the 3 survivors of rung 1 leave the 27-wide batch even though the sweep is tiny.
    return jaxmlp.sweep(grid27(synthetic_dir), out, progress=False, plots=False, callbacks=[SuccessiveHalving(3)],
                        repack=True)


# ---- rungs and brackets by hand ---------------------------------------------------------------------

def test_rungs_leave_survivors_eta_times_the_epochs():
    assert rungs(3, 1, 9) == [1, 3]            # 9 is the budget, not a rung
    assert rungs(3, 1, 27) == [1, 3, 9]
    assert rungs(3, 1, 10) == [1, 3]           # a rung at 9 would buy one epoch: none
    assert rungs(2, 1, 8) == [1, 2, 4]
    assert rungs(3, 2, 18) == [2, 6]
    assert rungs(3, 4, 9) == []


def test_hyperband_brackets_are_li_et_al_table_1():
    # Li et al. (2018), Table 1: R = 81, η = 3.
    assert [(b.s, b.points, b.start_epochs) for b in brackets(81, 3)] == \
        [(4, 81, 1), (3, 34, 3), (2, 15, 9), (1, 8, 27), (0, 5, 81)]
    assert brackets(27, 3)[1] == Bracket(2, 12, 3, (3, 9))
    # 10 epochs: s_max = 2 (3² ≤ 10 < 3³); n = ceil(3/(s+1)·3^s); the last stretch of each bracket is longer.
    assert brackets(10, 3) == [Bracket(2, 9, 1, (1, 3)), Bracket(1, 5, 3, (3,)), Bracket(0, 3, 9, ())]
    assert [(b.points, b.start_epochs) for b in brackets(8, 2, min_epochs=2)] == [(4, 2), (3, 4), (3, 8)]


# ---- the ranking, on a hand-made population --------------------------------------------------------

class FakePopulation:
    """What SuccessiveHalving reads of a population: numbers given by hand, stops recorded."""

    def __init__(self, hparams, values, epoch=1, epochs=9, active=None):
        self._hp, self._values, self.epoch, self.epochs = hparams, values, epoch, epochs
        self._active = list(range(len(hparams))) if active is None else active
        self.stopped, self.events, self.expected = {}, [], []

    size = property(lambda self: len(self._hp))

    def active(self):
        return list(self._active)

    def metric(self, name="val_accuracy"):
        return list(self._values)

    def hparams(self, i):
        return self._hp[i]

    def stop(self, indices, status="pruned", **info):
        for i in indices:
            self.stopped[i] = {"status": status, **info}
        self._active = [i for i in self._active if i not in self.stopped]
        return sorted(indices)

    def expect(self, n):
        self.expected.append(n)
        return 0

    def log(self, event):
        self.events.append(event)


def test_points_are_judged_by_their_mean_over_seeds_and_stopped_together():
    # 6 points × 2 seeds, stream-major (member s·6 + p). Means: p0 .55, p1 .75, p2 .6, p3 .6, p4 None, p5 .7.
    # Keep ceil(6/3) = 2: p1 and p5. p2 and p3 tie; p4 has a member without a number (diverged): last.
    hp = [{"lr": p, "seed": s} for s in (0, 1) for p in range(6)]
    vals = [0.5, 0.9, 0.6, 0.7, 0.9, 0.7] + [0.6, 0.6, 0.6, 0.5, None, 0.7]
    pop = FakePopulation(hp, vals)
    SuccessiveHalving(3).on_population(pop)
    kept = sorted(set(range(12)) - set(pop.stopped))
    assert kept == [1, 5, 7, 11]
    assert all(v == {"status": "pruned", "rung": 0} for v in pop.stopped.values())
    assert pop.events == [{"schedule": "successive_halving", "rung": 0, "metric": "val_accuracy", "points": 6,
                           "kept": 2, "stopped_members": 8}]
    # Rung 1 (after epoch 3 of 9) will keep ceil(2/3) = 1 of the 2 points left, 2 members: compiled ahead.
    assert pop.expected == [2]
    start = FakePopulation(hp, vals)
    SuccessiveHalving(3).on_start(start)
    assert start.expected == [4]                  # before rung 0: 2 of 6 points, 4 members


def test_ties_go_to_the_lower_index_and_losses_rank_low_first():
    hp = [{"lr": p, "seed": 0} for p in range(5)]
    pop = FakePopulation(hp, [0.5, 0.8, 0.8, 0.8, 0.8])
    SuccessiveHalving(2).on_population(pop)       # keep ceil(5/2) = 3 of four equals: the lower indices
    assert sorted(set(range(5)) - set(pop.stopped)) == [1, 2, 3]
    pop = FakePopulation(hp, [0.5, 0.8, 0.8, float("nan"), 0.1])
    SuccessiveHalving(2, metric="val_loss").on_population(pop)
    assert sorted(set(range(5)) - set(pop.stopped)) == [0, 1, 4]  # NaN counts as no number: last


def test_only_points_still_training_compete_at_later_rungs_and_per_group_ranks_within_groups():
    # Rung 1 (epoch 3 of 9): of 6 points, 3 and 5 were stopped before; 4 compete, ceil(4/3) = 2 kept.
    hp = [{"optimizer": o, "lr": p, "seed": 0} for o in ("adam", "sgd") for p in range(3)]
    vals = [0.9, 0.8, 0.7, None, 0.95, None]
    pop = FakePopulation(hp, vals, epoch=3, active=[0, 1, 2, 4])
    SuccessiveHalving(3).on_population(pop)
    assert sorted(pop.stopped) == [1, 2] and pop.stopped[1] == {"status": "pruned", "rung": 1}
    # Across the sweep sgd's 0.6 loses; per group, adam's three compete for ceil(3/3) = 1 place and sgd's
    # one point keeps its own.
    vals = [0.9, 0.8, 0.7, None, 0.6, None]
    pop = FakePopulation(hp, vals, epoch=3, active=[0, 1, 2, 4])
    SuccessiveHalving(3).on_population(pop)
    assert sorted(pop.stopped) == [2, 4]
    pop = FakePopulation(hp, vals, epoch=3, active=[0, 1, 2, 4])
    SuccessiveHalving(3, per_group=True).on_population(pop)
    assert sorted(pop.stopped) == [1, 2]
    # Not a rung epoch (2), or no rung below the budget: nothing happens.
    for epoch, epochs in ((2, 9), (1, 2)):
        pop = FakePopulation(hp, vals, epoch=epoch, epochs=epochs)
        SuccessiveHalving(3).on_population(pop)
        assert pop.stopped == {} and pop.events == []


# ---- a real sweep: 27 points, η 3, 9 epochs ---------------------------------------------------------

def _top(values, candidates, keep):
    return sorted(sorted(candidates, key=lambda i: (-values[i], i))[:keep])


def test_27_points_halve_to_9_then_3(halved):
    ms = halved.members
    assert collections.Counter((m["status"], m.get("rung"), m["epochs_run"]) for m in ms) == \
        {("pruned", 0, 1): 18, ("pruned", 1, 3): 6, ("finished", None, 9): 3}
    assert halved.timing["member_epochs"] == 27 + 9 * 2 + 3 * 6
    assert halved.timing["member_epochs_full"] == 27 * 9
    assert [(e["epoch"], e["rung"], e["points"], e["kept"]) for e in halved.events] == [(1, 0, 27, 9), (3, 1, 9, 3)]
    # The survivors of each rung are the best by that epoch's validation accuracy (ties: lower index).
    h = halved.history
    after1 = [i for i, v in enumerate(h[1]["val_accuracy"]) if v is not None]
    assert after1 == _top(h[0]["val_accuracy"], range(27), 9)
    after3 = [i for i, v in enumerate(h[3]["val_accuracy"]) if v is not None]
    assert after3 == _top(h[2]["val_accuracy"], after1, 3)
    assert [m["index"] for m in ms if m["status"] == "finished"] == after3
    assert halved.timing["compiled_epochs"] == 3          # 27 wide, the 9 survivors in 10, then the 3
    x, y = best_curve(halved)
    assert (x[-1], y[-1]) == (63, halved.best()["val"]["accuracy"])
    # A pruned member reports the numbers of its last epoch.
    m = next(m for m in ms if m.get("rung") == 1)
    assert m["val"]["accuracy"] == h[2]["val_accuracy"][m["index"]]


def test_halving_decisions_survive_a_kill_and_resume(halved, synthetic_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Killed):   # killed after rung 0, before rung 1 (and its repacking)
        jaxmlp.sweep(grid27(synthetic_dir), out, progress=False, plots=False,
                     callbacks=[SuccessiveHalving(3), KillAfter(2)], repack=True)
    resumed = jaxmlp.sweep(grid27(synthetic_dir), out, progress=False, plots=False, callbacks=[SuccessiveHalving(3)],
                           repack=True)
    assert resumed.members == halved.members
    assert resumed.events == halved.events
    assert resumed.timing["member_epochs"] == halved.timing["member_epochs"]


# ---- Hyperband ----------------------------------------------------------------------------------------

def test_hyperband_runs_its_brackets_on_drawn_points(synthetic_dir, tmp_path):
    # 3 epochs, η 3: s_max = 1; bracket 1: 3 points, rung at epoch 1 keeps 1; bracket 0: 2 points, no rung.
    config = jaxmlp.SweepConfig(data_dir=str(synthetic_dir), hidden=[(8,)], batch_size=[50], lr_schedule="constant")
    space = {"lr": (1e-4, 1e-1)}
    out = tmp_path / "hb"
    hb = hyperband(config, space, eta=3, max_epochs=3, out=out, seed=5, progress=False)
    points = sample(space, 5, seed=5)
    assert [[m["hparams"]["lr"] for m in r.members] for r in hb.results] == \
        [[p["lr"] for p in points[:3]], [p["lr"] for p in points[3:]]]
    b1, b0 = hb.results
    assert sorted(m["status"] for m in b1.members) == ["finished", "pruned", "pruned"]
    assert all(m["status"] == "finished" and m["epochs_run"] == 3 for m in b0.members)
    summary = json.loads((out / "hyperband.json").read_text())
    assert [(b["s"], b["points"], b["start_epochs"], b["member_epochs"], b["member_epochs_full"])
            for b in summary["brackets"]] == [(1, 3, 1, 3 + 2, 9), (0, 2, 3, 6, 6)]
    assert summary["member_epochs"] == 11 and summary["member_epochs_full"] == 15
    best = max((m["val"]["accuracy"], -s) for s, r in ((1, b1), (0, b0)) for m in r.members)
    assert (summary["best"]["val"]["accuracy"], -summary["best"]["bracket"]) == best
    assert (out / "bracket_1" / "results.json").is_file() and (out / "bracket_0" / "results.json").is_file()
    assert (out / "plots" / "compute.png").read_bytes()[:8] == PNG_MAGIC


def test_hyperband_needs_enough_points_and_a_rung(synthetic_dir):
    config = jaxmlp.SweepConfig(data_dir=str(synthetic_dir), hidden=[(8,)])
    with pytest.raises(UsageError, match=r"needs 5 points \(3 \+ 2\); got 4"):
        hyperband(config, [{"lr": 0.01}] * 4, max_epochs=3)
    with pytest.raises(UsageError, match="--min-epochs 1 × --eta 3 exceeds --epochs 2"):
        brackets(2, 3)


# ---- errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, words", [
    ({"eta": 1}, "eta must be an integer of at least 2"),
    ({"eta": 2.5}, "eta must be an integer of at least 2"),
    ({"min_epochs": 0}, "min_epochs must be an integer of at least 1"),
    ({"metric": "accuracy"}, "successive halving ranks by one of val_accuracy"),
])
def test_bad_halving_settings(kwargs, words):
    with pytest.raises(UsageError, match=words):
        SuccessiveHalving(**kwargs)


# ---- the best-against-compute curve -------------------------------------------------------------------

def _results(history, diverged=None) -> Results:
    n = len(history[0]["val_accuracy"])
    members = [{"index": i, "hparams": {"lr": 0.1 * (i + 1), "seed": 0}, "status": "finished",
                "diverged_epoch": (diverged or {}).get(i),
                "val": {"accuracy": 0.5, "loss": 1.0}, "test": {"accuracy": 0.5, "loss": 1.0}} for i in range(n)]
    return Results({"epochs": len(history), "hparams": {"lr": [0.1 * (i + 1) for i in range(n)]}}, members, history)


def _record(epoch, acc):
    return {"epoch": epoch, "val_accuracy": acc, "val_loss": [None if a is None else 1.0 for a in acc],
            "train_loss": [None if a is None else 1.0 for a in acc], "train_accuracy": acc,
            "active": [a is not None for a in acc]}


def test_best_curve_counts_member_epochs_and_takes_the_members_as_they_stand():
    # Member 2 stops after epoch 1 (keeps 0.6); member 1 reaches 0.9, then diverges in epoch 3 (counts no
    # more); member 0 falls from 0.65 to 0.62.
    a = _results([_record(1, [0.5, 0.7, 0.6]), _record(2, [0.65, 0.9, None]), _record(3, [0.62, None, None])],
                 diverged={1: 3})
    x, y = best_curve(a)
    np.testing.assert_array_equal(x, [3, 5, 6])
    np.testing.assert_allclose(y, [0.7, 0.9, 0.62])
    b = _results([_record(1, [None, 0.61])])
    x, y = best_curve([a, b])                       # brackets one after another: a's members still count
    np.testing.assert_array_equal(x, [3, 5, 6, 7])
    np.testing.assert_allclose(y, [0.7, 0.9, 0.62, 0.62])
    _, y = best_curve(a, "val_loss")
    np.testing.assert_allclose(y, [1.0, 1.0, 1.0])
    with pytest.raises(UsageError, match="unknown metric 'accuracy'"):
        best_curve(a, "accuracy")


def test_compute_plot_draws_a_line_per_run(tmp_path):
    a = _results([_record(1, [0.5, 0.7, 0.6]), _record(2, [0.65, None, None])])
    b = _results([_record(1, [0.5, 0.7, 0.6]), _record(2, [0.7, 0.75, 0.6])])
    path = save_compute_plot({"halving": a, "full grid": b}, tmp_path / "plots" / "compute.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    ax = best_vs_compute({"halving": a, "full grid": b})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["halving: 4 member-epochs, ends at 70.00 %", "full grid: 6 member-epochs, ends at 75.00 %"]


# ---- the command line ---------------------------------------------------------------------------------

wired = pytest.mark.skipif("hyperband" not in cli.build_parser().format_help(),
                           reason="jaxmlp.cli does not add --halving and hyperband yet")
FLAGS = ["--hidden", "8", "--batch-size", "50", "--quiet", "--no-plots", "--lr-schedule", "constant"]


@wired
@pytest.mark.parametrize("argv, words", [
    (["sweep", "--halving", "1", "--epochs", "3"], "--halving must be an integer of at least 2"),
    (["sweep", "--halving", "3", "--min-epochs", "0", "--epochs", "3"],
     "--min-epochs must be an integer of at least 1"),
    (["sweep", "--halving", "3", "--min-epochs", "2", "--epochs", "5"],
     "--min-epochs 2 × --halving 3 exceeds --epochs 5"),
    (["sweep", "--min-epochs", "2", "--epochs", "5"], "--min-epochs sets the first rung of --halving"),
    (["hyperband", "--eta", "1", "--epochs", "9", "--lr", "1e-3:1e-1"], "--eta must be an integer of at least 2"),
    (["hyperband", "--epochs", "2", "--lr", "1e-3:1e-1"], "exceeds --epochs 2"),
    (["hyperband", "--epochs", "9", "--lr", "0.01"], "hyperband needs at least one range"),
    (["hyperband", "--epochs", "9", "--lr", "1e-3:1e-1", "--sample", "5"], "drop --sample"),
])
def test_bad_flags_are_one_line_usage_errors(argv, words, synthetic_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main([*argv, "--data-dir", str(synthetic_dir), "--out", str(out), *FLAGS])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and words in err, err
    assert not out.exists()


@wired
def test_command_line_halving_and_hyperband(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = cli.main(["sweep", "--lr", "1e-4:1e-1", "--sample", "9", "--halving", "3", "--epochs", "3",
                   "--data-dir", str(synthetic_dir), "--out", str(out), *FLAGS])
    assert rc == 0
    ms = Results.read(out).members
    assert collections.Counter((m["status"], m.get("rung")) for m in ms) == {("pruned", 0): 6, ("finished", None): 3}
    out = tmp_path / "hb"
    rc = cli.main(["hyperband", "--lr", "1e-4:1e-1", "--epochs", "3", "--sample-seed", "5",
                   "--data-dir", str(synthetic_dir), "--out", str(out), *FLAGS])
    stdout = capsys.readouterr().out
    assert rc == 0 and "hyperband: 2 bracket(s), 5 points, 11 member-epochs (73% of" in stdout, stdout
    summary = json.loads((out / "hyperband.json").read_text())
    assert [b["points"] for b in summary["brackets"]] == [3, 2]
    lrs = [m["hparams"]["lr"] for s in (1, 0) for m in Results.read(out / f"bracket_{s}").members]
    assert lrs == [p["lr"] for p in sample({"lr": "1e-4:1e-1"}, 5, seed=5)]
    assert math.isclose(summary["best"]["val"]["accuracy"],
                        max(Results.read(out / f"bracket_{s}").best()["val"]["accuracy"] for s in (1, 0)))
