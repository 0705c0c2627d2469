"""The hyperparameter table: defaults, bounds and the checks every value goes through."""

from __future__ import annotations

import math

import jax.numpy as jnp
import pytest

from jaxmlp import hparams, optim
from jaxmlp.errors import UsageError


def table_hp(**values) -> dict:
    """One member's values as the program sees them: every table default, overridden by `values`, all
    float32 arrays (so no term is left out as a Python 0.0 would be)."""
    hp = {name: jnp.float32(row.default) for name, row in hparams.TABLE.items()}
    return {**hp, **{name: jnp.float32(v) for name, v in values.items()}}


def test_table_defaults():
    defaults = {name: hparams.TABLE[name].default for name in hparams.BUILTIN}   # others: declared by users
    assert defaults == {"dropout": 0.0, "l1": 0.0, "l2": 0.0, "lr": 1e-3, "momentum": 0.0, "weight_decay": 1e-4,
                        "b1": 0.9, "b2": 0.999, "label_smoothing": 0.0, "bn_momentum": 0.99}
    for row in hparams.TABLE.values():
        assert row.target in hparams.TARGETS
        assert row.check(row.default) == row.default     # every default passes its own check


def test_every_optimizer_argument_is_an_optimizer_row():
    for name, opt in optim.OPTIMIZERS.items():
        assert "lr" in opt.takes, name
        for arg in (*opt.takes, *opt.defaults):
            assert hparams.TABLE[arg].target == "optimizer", (name, arg)
    assert optim.OPTIMIZERS["momentum"].defaults == {"momentum": 0.9}
    assert optim.OPTIMIZERS["sgd"].defaults == {}


@pytest.mark.parametrize("name, value", [
    ("dropout", 1.0),            # high_open: a rate of 1 drops everything
    ("dropout", -0.1),
    ("lr", 0.0),                 # low_open
    ("lr", -1e-3),
    ("l2", -1e-4),
    ("label_smoothing", 1.5),
    ("b2", math.nan),
    ("lr", math.inf),
    ("l1", "much"),
])
def test_check_refuses_out_of_bounds_and_non_finite_values(name, value):
    with pytest.raises(UsageError, match=hparams.TABLE[name].flag):
        hparams.TABLE[name].check(value)


def test_check_accepts_the_bounds_that_are_closed():
    assert hparams.TABLE["dropout"].check(0) == 0.0
    assert hparams.TABLE["dropout"].check("0.99") == 0.99
    assert hparams.TABLE["l2"].check(0.0) == 0.0
    assert hparams.TABLE["lr"].check(1e-9) == 1e-9
    assert hparams.TABLE["dropout"].interval == "[0, 1)"
    assert hparams.TABLE["lr"].interval == "(0, inf)"
    assert hparams.TABLE["label_smoothing"].flag == "--label-smoothing"


def test_check_values_and_seeds():
    assert hparams.check_values("dropout", [0, 0.5]) == [0.0, 0.5]
    with pytest.raises(UsageError, match="--dropout has no values"):
        hparams.check_values("dropout", [])
    assert hparams.check_values("my_own", [-3.0]) == [-3.0]           # an undeclared name: finite only
    with pytest.raises(UsageError, match="not finite"):
        hparams.check_values("my_own", [math.inf])
    assert hparams.check_seed(7.0) == 7
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(UsageError):
            hparams.check_seed(bad)
