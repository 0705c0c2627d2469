"""Searching inside the population: member sets beyond grids (random and quasi-random points), schedules
that stop members (successive halving, asynchronous successive halving), population-based training, and
Optuna driving a sweep (:func:`optuna_search`, in ``jaxmlp.search.optuna_driver``; with the ``search`` extra)."""

from jaxmlp.search.asha import ASHA
from jaxmlp.search.halving import SuccessiveHalving, brackets, hyperband
from jaxmlp.search.pbt import PBT, lineage, pbt_sweep, schedules
from jaxmlp.search.points import Choice, IntRange, Range, parse_spec, sample

__all__ = ["ASHA", "PBT", "Choice", "IntRange", "Range", "SuccessiveHalving", "brackets", "hyperband", "lineage",
           "parse_spec", "pbt_sweep", "sample", "schedules", "optuna_search", "SearchResult"]


def __getattr__(name: str):   # on first use: importing jaxmlp.search loads no optuna
    if name in ("optuna_search", "SearchResult"):
        from jaxmlp.search import optuna_driver

        return getattr(optuna_driver, name)
    raise AttributeError(f"module 'jaxmlp.search' has no attribute {name!r}")
