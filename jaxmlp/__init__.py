"""jaxmlp: hyperparameter sweeps of small classifiers, trained as one jit-compiled, vmapped program.

Importing jaxmlp before jax gives a CPU one XLA device per core, as the ``jaxmlp`` command does (members
are then sharded over the cores); see :mod:`jaxmlp.hostdevices`.
"""

from __future__ import annotations

from jaxmlp.hostdevices import use_one_device_per_core

use_one_device_per_core()   # before anything imports jax; does nothing if jax already started

from jaxmlp.callbacks import Callback  # noqa: E402
from jaxmlp.config import SweepConfig  # noqa: E402
from jaxmlp.errors import UsageError  # noqa: E402
from jaxmlp.hparams import HParam, declare  # noqa: E402
# Imported here, not on first use: the submodule jaxmlp.compare, once imported, would otherwise replace the
# function of that name. It loads neither scipy nor pandas until called.
from jaxmlp.compare import compare  # noqa: E402

__version__ = "0.2.0"


def sweep(config: SweepConfig, out=None, **kwargs):
    """Train every member of a :class:`SweepConfig` as one compiled program; write the run directory `out`
    (results, history, plots, final variables; checkpoints in ``out/checkpoints``) and return its
    :class:`jaxmlp.results.Results`. Keyword arguments: see :func:`jaxmlp.run.run_sweep`."""
    from jaxmlp.run import run_sweep

    return run_sweep(config, out, **kwargs)


def load(run_dir, member: int | None = None, model=None):
    """A trained member of a run directory (default: the best on validation) as a
    :class:`jaxmlp.trained.Trained` with ``predict(x)``; `model`: the factory of a user's model."""
    from jaxmlp.trained import load as load_trained

    return load_trained(run_dir, member, model)


def read(run_dir):
    """The :class:`jaxmlp.results.Results` of a run directory."""
    from jaxmlp.results import Results

    return Results.read(run_dir)


def __getattr__(name: str):
    if name in ("data", "nn", "models", "optim", "hparams", "plots"):   # submodules on first use
        import importlib

        return importlib.import_module(f"jaxmlp.{name}")
    raise AttributeError(f"module 'jaxmlp' has no attribute {name!r}")


__all__ = ["sweep", "load", "read", "compare", "SweepConfig", "Callback", "HParam", "declare", "UsageError", "__version__"]
