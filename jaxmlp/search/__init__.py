"""Searching inside the population: member sets beyond grids (random and quasi-random points)."""

from jaxmlp.search.points import sample

__all__ = ["sample"]
