"""Stops free compute: members a schedule stops leave the compiled batch (repacking), and nothing else changes.

Equalities between two paths: a repacked sweep against the same sweep with stops only masked (member
independence across a repacking), and a sweep killed after a repacking and resumed against an
uninterrupted one (exact, bit for bit). The layout function is checked on hand-made cases.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

import jaxmlp
from jaxmlp import layout
from jaxmlp.callbacks import Callback
from interrupt import KillAfter, Killed


class KeepEighth(Callback):
    """After epoch 1, stop every member whose index is not a multiple of 8 (7 in 8 of them)."""

    def on_population(self, population):
        if population.epoch == 1:
            population.stop([i for i in population.active() if i % 8], rung=1)


def config(data_dir):
    return jaxmlp.SweepConfig(data_dir=str(data_dir), hidden=[(8,)], batch_size=[50], epochs=3,
                              lr_schedule="constant", seed=[0, 1],
                              hparams={"lr": list(np.geomspace(1e-3, 1e-1, 8)), "dropout": [0.0, 0.2]})


@pytest.fixture(scope="module")
def repacked(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("repacked") / "run"
    # repack=True: these tiny members save less arithmetic than a compile costs, which "auto" would not pay.
    return jaxmlp.sweep(config(synthetic_dir), out, progress=False, callbacks=[KeepEighth()], keep_variables=True,
                        repack=True)


def test_stopped_members_leave_the_batch_and_are_reported(repacked):
    assert repacked.timing["compiled_epochs"] == 2            # the planned 32 members, then the 4 survivors
    assert collections.Counter(m["status"] for m in repacked.members) == {"pruned": 28, "finished": 4}
    pruned = [m for m in repacked.members if m["status"] == "pruned"]
    assert all(m["rung"] == 1 and m["epochs_run"] == 1 and not m["stopped_early"] for m in pruned)
    assert repacked.timing["member_epochs"] == 32 + 2 * 4
    assert repacked.timing["member_epochs_full"] == 32 * 3
    assert [r["epoch"] for r in repacked.history] == [1, 2, 3]
    assert sum(v is not None for v in repacked.history[1]["val_loss"]) == 4


def test_repacking_changes_no_member(repacked, synthetic_dir):
    masked = jaxmlp.sweep(config(synthetic_dir), progress=False, callbacks=[KeepEighth()], repack=False,
                          keep_variables=True)
    assert masked.timing["compiled_epochs"] == 1
    for a, b in zip(repacked.members, masked.members):
        assert (a["status"], a["epochs_run"]) == (b["status"], b["epochs_run"])
        assert a["val"]["accuracy"] == pytest.approx(b["val"]["accuracy"], abs=1e-6)
        assert a["test"]["loss"] == pytest.approx(b["test"]["loss"], abs=1e-5)
    for va, vb in zip(repacked.variables, masked.variables):
        np.testing.assert_allclose(va["params"]["Dense_0"]["kernel"], vb["params"]["Dense_0"]["kernel"], atol=1e-5)


def test_a_sweep_killed_after_repacking_resumes_exactly(repacked, synthetic_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Killed):
        jaxmlp.sweep(config(synthetic_dir), out, progress=False, callbacks=[KeepEighth(), KillAfter(2)], repack=True)
    resumed = jaxmlp.sweep(config(synthetic_dir), out, progress=False, callbacks=[KeepEighth()], keep_variables=True,
                           repack=True)
    assert resumed.timing["compiled_epochs"] == 1             # the resumed epoch 3 ran in the restored layout
    assert resumed.members == repacked.members
    for va, vb in zip(resumed.variables, repacked.variables):
        for x, y in zip(jaxmlp_leaves(va), jaxmlp_leaves(vb)):
            np.testing.assert_array_equal(x, y)


def jaxmlp_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_auto_repacks_only_when_the_saved_training_outweighs_a_compile(synthetic_dir):
    # 28 freed tiny members for 2 epochs of 540 samples: about 1e10 FLOPs, far below a compile's worth.
    res = jaxmlp.sweep(config(synthetic_dir), progress=False, callbacks=[KeepEighth()])
    assert res.timing["compiled_epochs"] == 1 and res.timing["member_epochs"] == 32 + 2 * 4


def test_pack_gives_a_row_per_stream_bucketed_and_padded():
    # Stream 0 keeps 9 members, stream 2 keeps 1: rows of width 10 (the bucket above 9).
    kept = [(2, 5, 21)] + [(0, p, p) for p in range(9)]
    (unit,) = layout.pack(0, kept, chunk=64, n_devices=1)
    assert unit.streams == [0, 2] and unit.shape == (2, 10)
    np.testing.assert_array_equal(unit.index, [[*range(9), -1], [21] + [-1] * 9])
    np.testing.assert_array_equal(unit.points, [[*range(9), 8], [5] * 10])   # padding repeats the row's last
    # Two devices and one stream: the point axis is sharded, so it is padded to a multiple of 2.
    (unit,) = layout.pack(0, [(0, p, p) for p in range(3)], chunk=64, n_devices=2)
    assert unit.shape == (1, 4) and unit.shard_axis == 1
    # A chunk of 4 splits 3 streams of 2 into units of 2 rows.
    units = layout.pack(0, [(s, p, 10 * s + p) for s in range(3) for p in range(2)], chunk=4, n_devices=1)
    assert [u.shape for u in units] == [(2, 2), (1, 2)]
    assert [layout.bucket(n) for n in (1, 5, 8, 9, 11, 27, 32, 33, 100)] == [1, 5, 8, 10, 12, 28, 32, 40, 112]


class ExpectThenKeepEighth(KeepEighth):
    """KeepEighth, saying at the start how many will go on (so their program compiles in the background)."""

    def __init__(self):
        self.started = []

    def on_start(self, population):
        self.started += [population.expect(4), population.expect(4)]


def test_a_program_expected_ahead_is_the_one_the_repack_uses(synthetic_dir):
    cfg = config(synthetic_dir)
    cfg.hidden = [(6,)]   # a shape no other test compiled in this process
    hinted = ExpectThenKeepEighth()
    res = jaxmlp.sweep(cfg, progress=False, callbacks=[hinted], repack=True, keep_variables=True)
    assert hinted.started == [1, 0]                           # the 4 survivors' program; once
    assert res.timing["compiled_epochs"] == 2
    plain = jaxmlp.sweep(cfg, progress=False, callbacks=[KeepEighth()], repack=True, keep_variables=True)
    assert res.members == plain.members
    for va, vb in zip(res.variables, plain.variables):
        for x, y in zip(jaxmlp_leaves(va), jaxmlp_leaves(vb)):
            np.testing.assert_array_equal(x, y)


def test_nothing_is_expected_when_stops_stay_masked(synthetic_dir):
    hinted = ExpectThenKeepEighth()
    jaxmlp.sweep(config(synthetic_dir), progress=False, callbacks=[hinted], repack=False)
    assert hinted.started == [0, 0]
