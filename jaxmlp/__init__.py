"""jaxmlp: hyperparameter sweeps of small image classifiers, trained as one jit-compiled, vmapped program."""

from __future__ import annotations

__version__ = "0.1.0"


def sweep(config, out=None, **kwargs):
    """Train every member of a :class:`jaxmlp.config.SweepConfig`; see :func:`jaxmlp.run.run_sweep`."""
    from jaxmlp.run import run_sweep

    return run_sweep(config, out, **kwargs)


def load(run_dir, member: int = 0, checkpoint_dir=None):
    """A trained member's best variables and settings, ready for ``jaxmlp.models.apply``."""
    from jaxmlp.checkpoint import load_member

    return load_member(run_dir, member, checkpoint_dir)


__all__ = ["sweep", "load", "__version__"]
