"""Population-based training: exploit copies a member's whole state, explore changes its values in the
program, decisions are deterministic and a killed PBT sweep resumes exactly.

Equalities between two paths: a copied member trains on exactly as its source (same stream, same values),
members never replaced train as in a plain sweep, a killed and resumed PBT sweep equals an uninterrupted
one bit for bit; a member whose learning rate is set to ~0 keeps the weights it copied. The decision rule,
the perturbation and the schedule/lineage readers are checked on hand-made numbers.
"""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

import jaxmlp
from jaxmlp.callbacks import Callback
from interrupt import KillAfter, Killed
from jaxmlp.errors import UsageError
from jaxmlp.results import Results
from jaxmlp.search import Choice, IntRange, Range, sample
from jaxmlp.search.pbt import PBT, groups, lineage, pbt_sweep, perturbed, schedules, starting_space

SPACE = {"lr": (1e-3, 1e-1), "dropout": (0.0, 0.5)}


class StopAll(Callback):
    """Stop every member after epoch `epoch` (the run then ends: its final variables are those of that epoch)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_population(self, population):
        if population.epoch == self.epoch:
            population.stop(population.active(), status="cut")


def config(data_dir, epochs=6, points=None):
    return jaxmlp.SweepConfig(data_dir=str(data_dir), hidden=[(8,)], batch_size=[50], epochs=epochs,
                              lr_schedule="constant", points=points)


def leaves(tree):
    return jax.tree.leaves(tree)


@pytest.fixture(scope="module")
def pbt_run(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pbt") / "run"
    res = pbt_sweep(config(synthetic_dir), SPACE, n=8, seed=0, out=out, progress=False, keep_variables=True,
                    plots=False)
    return res, out


# ---- a real PBT sweep --------------------------------------------------------------------------------

def test_the_worst_quarter_copies_the_best_quarter_every_two_epochs(pbt_run):
    res, out = pbt_run
    assert [m["hparams"]["lr"] for m in res.members] == [p["lr"] for p in sample(SPACE, 8, seed=0)]
    events = res.events
    assert [e["epoch"] for e in events] == [2, 2, 4, 4]   # every 2 epochs, not at the last; 8 × 0.25 = 2 each
    for epoch in (2, 4):
        acc = res.history[epoch - 1]["val_accuracy"]
        ranked = sorted(range(8), key=lambda i: (-acc[i], i))
        batch = [e for e in events if e["epoch"] == epoch]
        assert [e["member"] for e in batch] == ranked[::-1][:2]              # worst first
        assert all(e["from"] in ranked[:2] for e in batch)
        assert all(e["values"] == {"member": acc[e["member"]], "from": acc[e["from"]]} for e in batch)
    # The events are the rule's moves on the recorded numbers and the values in effect then.
    pbt, sched = PBT(names=tuple(SPACE), space=SPACE), schedules(res)
    for epoch in (2, 4):
        current = {i: [v for t, v in sched[i] if t < epoch][-1] for i in range(8)}
        moves = pbt.decide(epoch, list(range(8)), res.history[epoch - 1]["val_accuracy"], current, SPACE)
        assert [(m.member, m.source, m.hparams, m.previous) for m in moves] == \
            [(e["member"], e["from"], e["hparams"], e["previous"]) for e in events if e["epoch"] == epoch]
        for m in moves:
            assert all(SPACE[n][0] <= v <= SPACE[n][1] for n, v in m.hparams.items())
    # How each member ended: replaced ones say by whom and when (the last time).
    last = {e["member"]: e for e in events}
    for m in res.members:
        if m["index"] in last:
            assert (m["status"], m["by"], m["replaced_at"]) == ("replaced", last[m["index"]]["from"],
                                                                last[m["index"]]["epoch"])
        else:
            assert m["status"] == "finished"
    written = json.loads((out / "results.json").read_text())
    assert written["events"] == events
    assert [m["status"] for m in written["members"]] == [m["status"] for m in res.members]


def test_copies_train_on_as_their_source_and_the_others_as_without_pbt(synthetic_dir):
    # No explore (factor 1, no resampling): a copy has its source's state and values, and one seed gives
    # every member the same stream, so it must train on exactly as the source (Adam's moments included).
    cfg = config(synthetic_dir, points=sample(SPACE, 8, seed=0))
    res = jaxmlp.sweep(cfg, progress=False, keep_variables=True, plots=False,
                       callbacks=[PBT(every=2, perturb=(1.0,), resample=0.0, names=tuple(SPACE))])
    plain = jaxmlp.sweep(cfg, progress=False, keep_variables=True, plots=False)
    assert len(res.events) == 4
    for e in res.events:
        dst, src = e["member"], e["from"]
        for epoch in (e["epoch"] + 1, e["epoch"] + 2):   # until the next exploit step
            line = res.history[epoch - 1]
            for metric in ("train_loss", "val_loss", "val_accuracy"):
                assert line[metric][dst] == line[metric][src]
    for e in [e for e in res.events if e["epoch"] == 4]:
        for a, b in zip(leaves(res.variables[e["member"]]), leaves(res.variables[e["from"]])):
            np.testing.assert_array_equal(a, b)
    untouched = set(range(8)) - {e["member"] for e in res.events}
    assert untouched
    for i in untouched:   # the exploits changed no other member
        assert [h["val_loss"][i] for h in res.history] == [h["val_loss"][i] for h in plain.history]
        for a, b in zip(leaves(res.variables[i]), leaves(plain.variables[i])):
            np.testing.assert_array_equal(a, b)


class SetLr(Callback):
    """At epoch 2, member 1 takes member 0's state with learning rate 1e-9, and member 2 with its own
    state gets half its dropout: the overrides the program must see."""

    def on_population(self, population):
        if population.epoch == 2:
            population.exploit([(1, 0)], {1: {"lr": 1e-9}, 2: {"dropout": population.hparams(2)["dropout"] / 2}})
            assert population.current_hparams(1)["lr"] == 1e-9


def test_new_values_take_effect_without_recompiling(synthetic_dir):
    cfg = config(synthetic_dir, epochs=4, points=sample(SPACE, 8, seed=0))
    res = jaxmlp.sweep(cfg, progress=False, keep_variables=True, plots=False, callbacks=[SetLr()])
    cut = jaxmlp.sweep(cfg, progress=False, keep_variables=True, plots=False, callbacks=[StopAll(2)])
    plain = jaxmlp.sweep(cfg, progress=False, keep_variables=True, plots=False)
    assert res.timing["compiled_epochs"] == 1
    # Member 1 holds member 0's epoch-2 weights and barely moves (Adam's steps are ~lr); member 0 trains on.
    moved = max(np.abs(a - b).max() for a, b in zip(leaves(res.variables[0]), leaves(cut.variables[0])))
    still = max(np.abs(a - b).max() for a, b in zip(leaves(res.variables[1]), leaves(cut.variables[0])))
    assert moved > 1e-2 and still < 1e-6
    assert res.history[3]["val_loss"][1] == pytest.approx(cut.history[1]["val_loss"][0], abs=1e-5)
    # Member 2's new dropout changes its training from epoch 3 on, not before.
    assert res.history[1]["train_loss"][2] == plain.history[1]["train_loss"][2]
    assert res.history[2]["train_loss"][2] != plain.history[2]["train_loss"][2]


def test_a_killed_pbt_sweep_resumes_exactly(pbt_run, synthetic_dir, tmp_path):
    reference, _ = pbt_run
    out = tmp_path / "run"
    with pytest.raises(Killed):
        pbt_sweep(config(synthetic_dir), SPACE, n=8, seed=0, out=out, progress=False, plots=False,
                  callbacks=[KillAfter(3)])
    resumed = pbt_sweep(config(synthetic_dir), SPACE, n=8, seed=0, out=out, progress=False, plots=False,
                        keep_variables=True)
    assert resumed.events == reference.events
    assert resumed.members == reference.members
    assert resumed.history == reference.history
    for va, vb in zip(resumed.variables, reference.variables):
        for a, b in zip(leaves(va), leaves(vb)):
            np.testing.assert_array_equal(a, b)


def test_names_the_program_cannot_change_are_refused(synthetic_dir):
    cfg = config(synthetic_dir, epochs=2, points=sample({"lr": (1e-3, 1e-1)}, 4, seed=0))
    with pytest.raises(UsageError, match="'dropout': it is 0 for every member"):
        jaxmlp.sweep(cfg, progress=False, plots=False, callbacks=[PBT(names=("lr", "dropout"))])
    with pytest.raises(UsageError, match="'width': it is not a hyperparameter of this sweep"):
        jaxmlp.sweep(cfg, progress=False, plots=False, callbacks=[PBT(names=("width",))])


@pytest.mark.parametrize("kwargs, message", [
    (dict(fraction=0.0), "fraction=0.0 must be in \\(0, 0.5\\]"),
    (dict(fraction=0.6), "fraction=0.6 must be in \\(0, 0.5\\]"),
    (dict(every=0), "every=0 must be a whole number of epochs >= 1"),
    (dict(every=1.5), "every=1.5 must be"),
    (dict(names=()), "must list each hyperparameter"),
    (dict(perturb=(0.8, -1.0)), "perturb=.* must list positive factors"),
    (dict(resample=1.5), "resample=1.5 is a probability"),
    (dict(metric="test_accuracy"), "metric 'test_accuracy' is unknown"),
    (dict(space={"lr": (1e-4, 1e-1)}), "space has no range for dropout"),
    (dict(space={"lr": (1e-1, 1e-4), "dropout": (0, 0.5)}), "--lr range 0.1:0.0001 is empty"),
    (dict(seed=-1), "PBT seed -1 is outside"),
])
def test_bad_settings_are_refused_with_one_line(kwargs, message):
    with pytest.raises(UsageError, match=message) as err:
        PBT(**kwargs)
    assert "\n" not in str(err.value)


def test_pbt_sweep_refuses_a_config_with_points(synthetic_dir):
    with pytest.raises(UsageError, match="draws its own starting points"):
        pbt_sweep(config(synthetic_dir, points=[{"lr": 0.01}]), SPACE)


# ---- the rule on hand-made numbers -------------------------------------------------------------------

def test_decisions_rank_break_ties_by_index_and_depend_on_seed_and_epoch_only():
    pbt = PBT(every=1, fraction=0.25, names=("lr",), perturb=(0.5, 2.0), resample=0.0, seed=3)
    values = [0.5, 0.9, 0.5, 0.1, 0.9, 0.7, 0.5, 0.3]
    current = {i: {"lr": 0.01 * (i + 1)} for i in range(8)}
    moves = pbt.decide(4, list(range(8)), values, current, {"lr": None})
    assert [m.member for m in moves] == [3, 7]               # the worst two, worst first
    assert all(m.source in (1, 4) for m in moves)            # the best two (0.9 twice)
    for m in moves:
        assert m.hparams["lr"] in (pytest.approx(current[m.source]["lr"] * 0.5),
                                   pytest.approx(current[m.source]["lr"] * 2.0))
        assert m.previous == current[m.member] and m.values == (values[m.member], values[m.source])
    assert pbt.decide(4, list(range(8)), values, current, {"lr": None}) == moves
    # Ties: among equal values the lower index ranks higher; the bottom takes the higher index.
    tied = pbt.decide(4, list(range(8)), [0.5] * 8, current, {"lr": None})
    assert [m.member for m in tied] == [7, 6] and all(m.source in (0, 1) for m in tied)
    # A loss ranks the other way.
    loss = PBT(fraction=0.25, names=("lr",), metric="val_loss", resample=0.0)
    assert [m.member for m in loss.decide(2, list(range(8)), values, current, {"lr": None})] == [4, 1]
    # Sources over many epochs: both of the best are drawn (a random choice, not always the first).
    sources = {m.source for e in range(1, 40) for m in pbt.decide(e, list(range(8)), values, current, {"lr": None})}
    assert sources == {1, 4}
    assert pbt.decide(2, [5], values, current, {"lr": None}) == []   # one member: nothing to copy


def test_resampling_draws_from_the_space():
    pbt = PBT(every=1, fraction=0.5, names=("lr", "dropout"), resample=1.0, space=SPACE)
    current = {i: {"lr": 0.5, "dropout": 0.9} for i in range(4)}   # outside the space: resampled values are not
    moves = pbt.decide(2, [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4], current, SPACE)
    for m in moves:
        assert 1e-3 <= m.hparams["lr"] < 1e-1 and 0.0 <= m.hparams["dropout"] < 0.5


def test_perturbation_stays_within_the_space_and_the_table():
    assert perturbed("lr", 0.01, 1.25, (1e-3, 1e-1)) == 0.0125
    assert perturbed("lr", 0.09, 1.25, (1e-3, 1e-1)) == 0.1           # clipped to the space
    assert perturbed("dropout", 0.9, 1.25, None) == math.nextafter(1.0, 0.0)   # below the table's open 1
    assert perturbed("dropout", 0.2, 0.8, "0:0.6") == 0.16
    assert perturbed("dropout", 0.2, 1.25, Choice([0.0, 0.2, 0.5])) == 0.5   # the next choice up
    assert perturbed("dropout", 0.2, 0.8, Choice([0.0, 0.2, 0.5])) == 0.0
    assert perturbed("width", 10.0, 1.25, IntRange(4, 64)) == 12.0             # 12.5, rounded to even
    assert starting_space([{"lr": 0.01, "dropout": 0.0}, {"lr": 0.1, "dropout": 0.0}], ["lr", "dropout"]) == \
        {"lr": Range(0.01, 0.1, log=True), "dropout": None}


def test_members_are_ranked_within_their_group():
    start = [{"optimizer": "adam", "hidden": "8", "lr": 1}, {"optimizer": "sgd", "hidden": "8", "lr": 1},
             {"optimizer": "adam", "hidden": "8", "lr": 2}, {"optimizer": "sgd", "hidden": "8", "lr": 2}]
    assert groups(start) == [[0, 2], [1, 3]]


# ---- reading a run back --------------------------------------------------------------------------------

def hand_made() -> Results:
    """Four members, 6 epochs: 2 took 0's state at epoch 2, then 0 took 2's at epoch 4."""
    members = [{"index": i, "hparams": {"lr": 0.01 * (i + 1), "dropout": 0.1 * i, "seed": 0}, "epochs_run": 6,
                "status": "finished", "val": {"accuracy": 0.5 + 0.1 * i, "loss": 1.0}, "test": {}} for i in range(4)]
    events = [{"epoch": 2, "schedule": "pbt", "member": 2, "from": 0, "hparams": {"lr": 0.0125, "dropout": 0.0},
               "previous": {}, "metric": "val_accuracy", "values": {}},
              {"epoch": 4, "schedule": "pbt", "member": 0, "from": 2, "hparams": {"lr": 0.01, "dropout": 0.05},
               "previous": {}, "metric": "val_accuracy", "values": {}},
              {"epoch": 4, "schedule": "other", "member": 1}]
    history = [{"epoch": e, "val_accuracy": [0.5] * 4, "val_loss": [1.0] * 4, "train_loss": [1.0] * 4,
                "train_accuracy": [0.5] * 4, "active": [True] * 4} for e in range(1, 7)]
    return Results({"epochs": 6}, members, history, events=events)


def test_schedules_and_lineage_follow_the_events():
    res = hand_made()
    sched = schedules(res)
    assert sched[0] == [(0, {"lr": 0.01, "dropout": 0.0}), (4, {"lr": 0.01, "dropout": 0.05})]
    assert sched[2] == [(0, {"lr": 0.03, "dropout": 0.2}), (2, {"lr": 0.0125, "dropout": 0.0})]
    assert sched[1] == [(0, {"lr": 0.02, "dropout": 0.1})]
    lin = lineage(res)
    assert lin[0] == [(0, 2, 0), (2, 4, 2), (4, 6, 0)]   # 0's weights: its own to 2, then 2's to 4, then its own
    assert lin[2] == [(0, 2, 0), (2, 6, 2)]
    assert lin[3] == [(0, 6, 3)]


def test_the_schedule_plot_has_a_panel_per_name_and_a_lineage(tmp_path):
    from jaxmlp.plots.pbt import pbt_schedules

    fig = pbt_schedules(hand_made())
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 3
    assert panels[0].get_yscale() == "log" and panels[1].get_yscale() == "linear"
    assert "best member 3" in fig.get_suptitle()
    fig.savefig(tmp_path / "pbt.png")
    assert (tmp_path / "pbt.png").stat().st_size > 10_000
    assert len(pbt_schedules(hand_made(), ["lr"], show_lineage=False).axes) == 2   # a panel and its colorbar
