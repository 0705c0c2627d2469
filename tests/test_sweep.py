"""The member axis: members of a sweep train exactly as they would alone; early stopping, folds, groups.

Every run here is small (hidden 16, batch 32, 3 epochs on the 540/60/200 synthetic split) and shared
through the module-scoped `runs` cache, so each distinct configuration compiles and trains once.

Why tanh: a member of a vmapped sweep and the same member alone run different XLA programs (batched
matmuls), so their sums differ in float32 rounding (~1e-7). With ReLU a pre-activation that lands within
that noise of 0 (seen here: |h| = 2e-7 in one step of a 3-epoch run) switches a unit on in one program
and off in the other; Adam then turns that into a 3e-4 parameter difference — a rounding effect, not a
difference in keys, order or masks. tanh is smooth, so what remains is rounding noise, measured below
1e-5, and the tolerances can be tight enough that any real difference fails (another dropout rate moved
the parameters by 0.018-0.034 here; another seed by more).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxmlp import members
from jaxmlp.config import SweepConfig, parse_hidden, parse_values
from jaxmlp.errors import UsageError
from jaxmlp.results import Results
from jaxmlp.run import run_sweep

BASE = dict(hidden=[(16,)], batch_size=[32], epochs=3, activation=["tanh"])
DROPOUTS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9]
# Measured |difference| between a member of a sweep and the same member alone (this machine, 2026-11,
# 12,730 weights): 99.9 % of weights within 8e-7, losses within 3e-8; but Adam divides by the root of
# tiny squared gradients, so a reduction-order difference in a near-zero gradient can move a single
# weight by up to ~lr a step (max seen 1.1e-4, one weight of 12,730). Hence a two-part tolerance: 99.9 %
# of weights within PARAM_ATOL (>= 10x margin), every weight within PARAM_MAX; two different members differ
# in their 99.9 % quantile by far more than 50x PARAM_ATOL (checked).
PARAM_ATOL, PARAM_MAX = 1e-5, 5e-4
LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-5
N_SAMPLES = {"train": 540, "val": 60, "test": 200}   # of the synthetic split: one sample of accuracy


def make_config(data_dir, **settings) -> SweepConfig:
    return SweepConfig(data_dir=str(data_dir), **{**BASE, **settings})


@pytest.fixture(scope="module")
def runs(synthetic_dir):
    """`runs(**settings)`: the Results (with variables) of a sweep, trained once per distinct settings."""
    cache: dict[str, Results] = {}

    def get(**settings) -> Results:
        key = repr(sorted(settings.items()))
        if key not in cache:
            cache[key] = run_sweep(make_config(synthetic_dir, **settings), progress=False, keep_variables=True)
        return cache[key]

    return get


def param_diffs(a, b) -> np.ndarray:
    """|a - b| of every weight of two variable trees, flattened."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    diffs = jax.tree.map(lambda x, y: np.abs(np.asarray(x) - np.asarray(y)).ravel(), a, b)
    return np.concatenate(jax.tree.leaves(diffs))


def max_param_diff(a, b) -> float:
    return float(param_diffs(a, b).max())


def bulk_param_diff(a, b) -> float:
    """The 99.9 % quantile of |a - b| over all weights."""
    return float(np.quantile(param_diffs(a, b), 0.999))


def assert_same_member(sweep: Results, i: int, alone: Results, j: int = 0) -> None:
    """Member i of `sweep` has the settings and results of member j of `alone`."""
    a, b = sweep.members[i], alone.members[j]
    # A sweep of several optimizers records only the settings every group's program reads (no Adam β₁
    # for a group of SGD): compare those.
    assert a["hparams"] == {k: v for k, v in b["hparams"].items() if k in a["hparams"]}
    assert (a["best_epoch"], a["epochs_run"], a["stopped_early"]) == (b["best_epoch"], b["epochs_run"],
                                                                      b["stopped_early"])
    assert bulk_param_diff(sweep.variables[i], alone.variables[j]) <= PARAM_ATOL
    assert max_param_diff(sweep.variables[i], alone.variables[j]) <= PARAM_MAX
    for split in ("val", "test"):
        np.testing.assert_allclose(a[split]["loss"], b[split]["loss"], rtol=LOSS_RTOL, atol=LOSS_ATOL)
        assert_close_accuracy(a[split]["accuracy"], b[split]["accuracy"], split)
    assert len(sweep.history) == len(alone.history)
    for ha, hb in zip(sweep.history, alone.history):
        for split in ("train", "val"):
            np.testing.assert_allclose(ha[f"{split}_loss"][i], hb[f"{split}_loss"][j], rtol=LOSS_RTOL,
                                       atol=LOSS_ATOL)
            assert_close_accuracy(ha[f"{split}_accuracy"][i], hb[f"{split}_accuracy"][j], split)


def assert_close_accuracy(a: float, b: float, split: str) -> None:
    """Equal up to one sample: a logit near-tie can fall either way within the rounding noise (seen once
    in 1,620 training-accuracy evaluations, with parameters 3e-8 apart)."""
    assert abs(a - b) <= 1 / N_SAMPLES[split] + 1e-6, (split, a, b)


def index_of(res: Results, **hparams) -> int:
    found = [m["index"] for m in res.members if all(m["hparams"][k] == v for k, v in hparams.items())]
    assert len(found) == 1, (hparams, found)
    return found[0]


# ---- member independence -----------------------------------------------------------------------------

def test_dropout_sweep_members_equal_solo_runs(runs):
    sweep = runs(dropout=DROPOUTS)
    assert [m["hparams"]["dropout"] for m in sweep.members] == DROPOUTS
    assert [m["index"] for m in sweep.members] == list(range(6))
    assert_same_member(sweep, DROPOUTS.index(0.1), runs(dropout=[0.1]))
    # Sanity: the comparison can fail — members with other rates really differ.
    assert bulk_param_diff(sweep.variables[1], sweep.variables[4]) > 50 * PARAM_ATOL


def test_members_walked_in_blocks_with_shared_draws_equal_solo_runs(runs):
    """Blocks of one member (what a CPU picks for a large model): the stream's dropout draws are made once
    per epoch ahead of the walk instead of in every member's steps; the numbers are those of a member alone."""
    walked = runs(dropout=DROPOUTS, member_block=1, devices=1)
    for rate in (0.1, 0.7):
        assert_same_member(walked, DROPOUTS.index(rate), runs(dropout=[rate]))
    assert bulk_param_diff(walked.variables[1], walked.variables[4]) > 50 * PARAM_ATOL


def test_a_given_block_size_is_kept_and_its_smaller_last_block_equals_solo_runs(runs):
    """6 members in blocks of 4 (given): a block of 4, then lax.map's smaller last block of 2."""
    uneven = runs(dropout=DROPOUTS, member_block=4, devices=1)
    for rate in (0.1, 0.7):   # one member of each block
        assert_same_member(uneven, DROPOUTS.index(rate), runs(dropout=[rate]))


@pytest.mark.parametrize("n, limit, block", [
    (16, 31, 16), (32, 31, 32), (38, 31, 38),   # within a quarter over the limit: one block
    (64, 31, 32), (100, 31, 25), (63, 31, 21),  # the fewest equal blocks of at most 38
    (41, 31, 31), (7, 4, 4),                    # equal blocks would be under half the limit: the limit
    (5, 1, 1), (1, 31, 1)])
def test_chosen_blocks_are_of_one_size(n, limit, block):
    from jaxmlp.program import even_block

    assert even_block(n, limit) == block


def test_seed_by_lr_grid_members_equal_solo_runs(runs):
    grid = runs(seed=[0, 1], lr=[1e-3, 3e-3], dropout=[0.1])
    # Stream-major order: seed 0 with each lr, then seed 1 with each lr.
    assert [(m["hparams"]["seed"], m["hparams"]["lr"]) for m in grid.members] == [
        (0, 1e-3), (0, 3e-3), (1, 1e-3), (1, 3e-3)]
    assert_same_member(grid, 0, runs(dropout=[0.1]))
    assert_same_member(grid, 3, runs(seed=[1], lr=[3e-3], dropout=[0.1]))
    assert bulk_param_diff(grid.variables[0], grid.variables[2]) > 50 * PARAM_ATOL   # seeds differ


def test_member_does_not_depend_on_sweep_size_or_order(runs):
    """The same rates in a 6-member ascending sweep and a 3-member descending one, and alone."""
    full, reordered = runs(dropout=DROPOUTS), runs(dropout=[0.5, 0.3, 0.1])
    assert [m["hparams"]["dropout"] for m in reordered.members] == [0.5, 0.3, 0.1]
    for rate in (0.5, 0.3, 0.1):
        assert_same_member(reordered, index_of(reordered, dropout=rate), full, index_of(full, dropout=rate))
    assert_same_member(reordered, 2, runs(dropout=[0.1]))


# ---- early stopping ----------------------------------------------------------------------------------

# A constant lr of 1.0 overshoots, so its val loss soon rises; lr 1e-3 keeps improving for 6 epochs.
ES_SETTINGS = dict(lr=[1e-3, 0.3, 1.0], patience=1, epochs=6, lr_schedule="constant")


@pytest.fixture(scope="module")
def stepped(synthetic_dir):
    """Train the early-stopping sweep epoch by epoch, keeping a host copy of the state after each."""
    prep = members.prepare(make_config(synthetic_dir, **ES_SETTINGS))
    state = members.initial_state(prep)
    assert len(prep.units) == 1
    snapshots = []
    for _ in range(ES_SETTINGS["epochs"]):
        members.run_epoch(prep, state)
        # np.array copies: the next epoch donates (and deletes) the device buffers.
        snapshots.append(jax.tree.map(lambda a: np.array(a), state.units[0]))
    return prep, state, snapshots


def member_leaves(snapshot, b: int) -> list[np.ndarray]:
    return [leaf[0, b] for leaf in jax.tree.leaves(snapshot)]


def test_a_stopped_member_no_longer_changes(stepped):
    prep, state, snapshots = stepped
    epochs = len(snapshots)
    stops = {}
    for b in range(prep.size):
        active = [bool(s.active[0, b]) for s in snapshots]
        assert active == sorted(active, reverse=True)        # once stopped, never active again
        if not all(active):
            stops[b] = active.index(False)                    # the epoch (0-based) it stopped after
    assert stops and min(stops.values()) < epochs - 1, "premise: some member stops before the end"
    assert len(stops) < prep.size, "premise: some member trains to the end"
    for b, stop in stops.items():
        frozen = member_leaves(snapshots[stop], b)
        for later in snapshots[stop + 1:]:
            assert all(np.array_equal(x, y) for x, y in zip(frozen, member_leaves(later, b)))
    for b in set(range(prep.size)) - set(stops):   # the check can fail: a running member does change
        assert not np.array_equal(snapshots[-2].variables["params"]["Dense_0"]["kernel"][0, b],
                                  snapshots[-1].variables["params"]["Dense_0"]["kernel"][0, b])
    assert members.all_stopped(prep, state) == (len(stops) == prep.size)


def test_early_stopping_fields_follow_the_history(stepped):
    prep, state, snapshots = stepped
    records = members.member_records(prep, state)
    finals = members.member_variables(prep, state)
    for rec in records:
        i = rec["index"]
        val = [h["val_loss"][i] for h in state.history]
        ran = [v for v in val if v is not None]
        assert all(v is None for v in val[len(ran):])        # None only after stopping
        assert rec["epochs_run"] == len(ran)
        assert rec["stopped_early"] == (len(ran) < ES_SETTINGS["epochs"])
        assert rec["best_epoch"] == int(np.argmin(ran)) + 1
        assert rec["val"]["loss"] == ran[rec["best_epoch"] - 1]
        if rec["stopped_early"]:   # patience 1: it stopped at the first epoch that did not improve
            assert ran[-1] >= min(ran[:-1]) and list(ran[:-1]) == sorted(ran[:-1], reverse=True)
        # Test numbers come from the best epoch's parameters.
        best = snapshots[rec["best_epoch"] - 1].variables
        for x, y in zip(jax.tree.leaves(finals[i]), jax.tree.leaves(best)):
            assert np.array_equal(x, y[0, i])
    assert any(r["stopped_early"] for r in records) and not all(r["stopped_early"] for r in records)


# ---- folds and groups --------------------------------------------------------------------------------

def test_kfold_adds_a_fold_axis_with_disjoint_validation_sets(synthetic_dir):
    config = make_config(synthetic_dir, folds=3, dropout=[0.0, 0.5])
    assert config.size == 3 * 2 and "fold" in config.swept()
    (group,) = config.groups()
    assert [(m["fold"], m["dropout"], m["seed"]) for m in group.member_hparams()] == [
        (0, 0.0, 0), (0, 0.5, 0), (1, 0.0, 0), (1, 0.5, 0), (2, 0.0, 0), (2, 0.5, 0)]

    prep = members.prepare(config)
    dd = prep.data["fashion_mnist"]
    labels = np.asarray(dd.pool["y"])
    assert dd.val_idx.shape == (3, 200) and dd.train_idx.shape == (3, 400)
    for f in range(3):
        assert len(set(dd.val_idx[f])) == 200
        assert not set(dd.train_idx[f]) & set(dd.val_idx[f])
        np.testing.assert_array_equal(np.bincount(labels[dd.val_idx[f]], minlength=10), np.full(10, 20))
        for g in range(f + 1, 3):
            assert not set(dd.val_idx[f]) & set(dd.val_idx[g])
    assert set(np.concatenate(list(dd.val_idx))) == set(range(600))
    # Each stream (seed 0, fold f) trains on fold f's sets, with a key of its own.
    (unit,) = prep.units
    _, stream = prep.inputs[0]
    assert unit.shape[0] == 3
    for f in range(3):
        np.testing.assert_array_equal(np.asarray(stream.val_idx[f]), dd.val_idx[f])
        np.testing.assert_array_equal(np.asarray(stream.train_idx[f]), dd.train_idx[f])
    keys = jax.random.key_data(stream.key)
    assert len({np.asarray(k).tobytes() for k in keys}) == 3


def test_groups_share_one_results_table(runs):
    res = runs(hidden=[(8,), (16,)], optimizer=["sgd", "adam"], dropout=[0.1])
    got = [(m["index"], m["hparams"]["hidden"], m["hparams"]["optimizer"]) for m in res.members]
    assert got == [(0, "8", "sgd"), (1, "8", "adam"), (2, "16", "sgd"), (3, "16", "adam")]
    assert res.variables[0]["params"]["Dense_0"]["kernel"].shape == (8, 784)
    assert res.variables[2]["params"]["Dense_0"]["kernel"].shape == (16, 784)
    for h in res.history:
        assert all(len(h[m]) == 4 and None not in h[m] for m in members.METRICS)
    # The (16, adam) group's member is the same model as the plain dropout-0.1 run.
    assert_same_member(res, 3, runs(dropout=[0.1]))


# ---- value specs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, expected", [
    ("0.5", float, [0.5]),
    ("0.1,0.5, 0.9", float, [0.1, 0.5, 0.9]),
    ("0:1:5", float, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("0:0.3:4", float, [0.0, 0.1, 0.2, 0.3]),                  # float noise rounded away
    ("0.2:0.2:1", float, [0.2]),
    ("1e-4:1e-1:4:log", float, [1e-4, 1e-3, 1e-2, 1e-1]),
    ("0.01:0.99:3", float, [0.01, 0.5, 0.99]),
    ("0,1,2", int, [0, 1, 2]),
    ("0:4:3", int, [0, 2, 4]),
])
def test_parse_values(text, kind, expected):
    assert parse_values(text, "dropout", kind) == expected


@pytest.mark.parametrize("text, kind, message", [
    ("", float, "--l2 is empty"),
    ("   ", float, "--l2 is empty"),
    ("0:1:0", float, "needs 1 <= num <= 100000, got 0"),
    ("0:1:-2", float, "needs 1 <= num <= 100000, got -2"),
    ("0:1:3:log", float, "log range needs positive bounds"),
    ("-1:1:3:log", float, "log range needs positive bounds"),
    ("abc", float, "--l2 'abc' is not a number"),
    ("0.1,,0.2", float, "is not a number"),
    ("0:1:2.5", float, "is not a number"),
    ("0:1", float, "a range is start:stop:num or start:stop:num:log"),
    ("0:1:3:lin", float, "a range is start:stop:num or start:stop:num:log"),
    ("0:1:5", int, "repeated integers"),
])
def test_parse_values_rejects(text, kind, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")) as e:
        parse_values(text, "l2", kind)
    assert "\n" not in str(e.value)


def test_parse_hidden():
    assert parse_hidden("256,128") == (256, 128)
    assert parse_hidden("8") == (8,)
    for bad in ("", "8,", "a", "8,0", "-3"):
        with pytest.raises(UsageError, match="--hidden .* is malformed"):
            parse_hidden(bad)


def test_a_resumed_sweep_reports_the_time_of_every_session(synthetic_dir, tmp_path):
    from interrupt import KillAfter, Killed

    cfg = SweepConfig(data_dir=str(synthetic_dir), hidden=[(8,)], batch_size=[50], epochs=3, dropout=[0.0, 0.2])
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run_sweep(cfg, out, progress=False, plots=False, callbacks=[KillAfter(2)])
    resumed = run_sweep(cfg, out, progress=False, plots=False)
    assert (resumed.timing["sessions"], resumed.timing["epochs_this_session"]) == (2, 1)
    again = run_sweep(cfg, out, progress=False, plots=False)   # finished: nothing to train
    assert (again.timing["sessions"], again.timing["epochs_this_session"]) == (2, 0)
    # Not the zeros of a session that trained nothing: what the two sessions that trained it spent.
    assert again.timing["train_s"] == resumed.timing["train_s"] > 0
    assert again.timing["compile_s"] == resumed.timing["compile_s"]
    assert again.members == resumed.members


def test_sweeps_of_one_dataset_object_share_its_device_copy(synthetic_dir):
    """A search's batches (or a script's sweeps) given the same Dataset object reuse its split and device
    copy; other split settings make a new one; the results are those of a sweep that made its own."""
    import dataclasses

    from jaxmlp import data as data_lib

    ds = data_lib.load("fashion_mnist", str(synthetic_dir))
    cfg = SweepConfig(dataset=[ds], hidden=[(8,)], batch_size=[50], epochs=2, dropout=[0.0, 0.2])
    first = members.prepare(cfg).group_data(0)
    again = members.prepare(dataclasses.replace(cfg, dropout=[0.1, 0.3])).group_data(0)
    assert again.pool["x"] is first.pool["x"] and again.test["y"] is first.test["y"]
    other = members.prepare(dataclasses.replace(cfg, val_fraction=0.2)).group_data(0)
    assert other.pool["x"] is not first.pool["x"] and other.val_idx.shape[1] != first.val_idx.shape[1]
    # Reused and fresh copies train the same numbers.
    shared = run_sweep(cfg, progress=False, plots=False)
    members._LAST_DATA.clear()
    fresh = run_sweep(cfg, progress=False, plots=False)
    assert shared.members == fresh.members


def test_programs_compiled_for_a_stand_in_serve_the_real_data(synthetic_dir):
    """A search compiles a batch's programs from its data's labels and shapes while the images load: the
    sweep of the real data then runs those very programs, with the numbers of a sweep that built its own."""
    import dataclasses

    from jaxmlp import data as data_lib, program

    real = data_lib.load("fashion_mnist", str(synthetic_dir))
    cfg = SweepConfig(dataset=[real], hidden=[(8,)], batch_size=[50], epochs=2, dropout=[0.05, 0.15], seed=[7])
    program._PROGRAMS.clear()
    built = run_sweep(cfg, progress=False, plots=False)
    program._PROGRAMS.clear()
    members.compile_ahead_for(dataclasses.replace(cfg, dataset=[data_lib.stand_in("fashion_mnist",
                                                                                 str(synthetic_dir))]))
    ahead = list(program._PROGRAMS.values())
    assert len(ahead) == 1 and not ahead[0].needs_compile()   # compiling (or compiled)
    prep = members.prepare(cfg)
    assert prep.programs == ahead and prep.programs[0] is ahead[0]
    assert run_sweep(cfg, progress=False, plots=False).members == built.members
