"""Searching inside the population: member sets beyond grids (random and quasi-random points)."""

from jaxmlp.search.points import Choice, IntRange, Range, parse_spec, sample

__all__ = ["Choice", "IntRange", "Range", "parse_spec", "sample"]
