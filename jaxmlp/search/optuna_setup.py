"""What an Optuna-driven search is made of: its space as Optuna distributions, samplers and pruners by
name, and the checks of a sweep config that a search can drive (one kind of model, one trial a member).

Samplers are made fresh for every trial from a seed derived from (search seed, trial number), so that
what a trial draws depends on what the study holds alone, never on a sampler object's random state that
a killed process loses (see :mod:`jaxmlp.search.optuna_steps`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from jaxmlp.errors import UsageError
from jaxmlp.search.points import Choice, IntRange, Range, Spec
from jaxmlp.search.points import _checked as checked_spec   # the same validation as sample()'s

if TYPE_CHECKING:
    import optuna

    from jaxmlp.config import SweepConfig

SAMPLERS = ("tpe", "cmaes", "gp", "qmc", "random")
PRUNERS = ("none", "median", "halving", "hyperband")
METRICS = {"val_accuracy": ("maximize", "accuracy"), "val_loss": ("minimize", "loss")}
INSTALL = "the search needs optuna: pip install 'jaxmlp[search]'"


def require_optuna() -> None:
    """Raise the one-line :class:`UsageError` that says how to install Optuna, when it is missing."""
    try:
        import optuna  # noqa: F401  (only whether it imports)
    except ImportError:
        raise UsageError(INSTALL) from None


# ---- the space ------------------------------------------------------------------------------------------

def settle_space(space: Mapping[str, Spec]) -> dict[str, Range | IntRange | Choice]:
    """Every spec checked, as a :class:`Range`, :class:`IntRange` or :class:`Choice` with its axis settled
    (the hyperparameter table's log axis unless the spec says otherwise)."""
    if not space:
        raise UsageError("a search needs at least one hyperparameter range: --lr 1e-4:1e-1 on the command line, "
                         "{'lr': (1e-4, 1e-1)} from Python")
    return {name: checked_spec(name, spec, None) for name, spec in space.items()}


def suggest(trial: "optuna.Trial", name: str, spec: Range | IntRange | Choice) -> float:
    """The trial's value of `name`, as a float that passes the name's table check."""
    from jaxmlp import hparams as hp_table

    row = hp_table.row(name)
    if isinstance(spec, Choice):
        value = trial.suggest_categorical(name, list(spec.values))
    elif isinstance(spec, IntRange):
        value = trial.suggest_int(name, spec.low, spec.high, log=bool(spec.log))
    else:
        value = trial.suggest_float(name, spec.low, spec.high, log=bool(spec.log))
    return row.check(value)   # both ends were checked (a range's high end included, as in Optuna)


def space_json(space: Mapping[str, Range | IntRange | Choice]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, s in space.items():
        if isinstance(s, Choice):
            out[name] = {"choice": list(s.values)}
        else:
            out[name] = {"int" if isinstance(s, IntRange) else "range": [s.low, s.high], "log": bool(s.log)}
    return out


# ---- samplers and pruners -------------------------------------------------------------------------------

def trial_seed(seed: int, number: int) -> int:
    """Trial `number`'s sampler seed: independent streams per trial from one search seed."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def sampler_factory(sampler: str | Callable[[int], Any], seed: int, batch: int) -> Callable[[int], Any]:
    """A function trial number -> a fresh Optuna sampler. `sampler`: a name of :data:`SAMPLERS`, or a
    function seed -> sampler (it gets the trial's own seed)."""
    import optuna

    if callable(sampler):
        return lambda number: _checked_sampler(sampler(trial_seed(seed, number)))
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        if isinstance(sampler, optuna.samplers.BaseSampler):
            raise UsageError("give the sampler as a function seed -> sampler (e.g. lambda seed: "
                             "optuna.samplers.TPESampler(seed=seed)), so that each trial's draw can be made "
                             "again alike when a search resumes")
        raise UsageError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if sampler == "cmaes":
        _needs("cmaes", "cmaes", "the cmaes sampler")
    if sampler == "gp":
        _needs("torch", "torch", "the gp sampler")
    s = optuna.samplers

    def make(number: int) -> Any:
        with warnings.catch_warnings():   # QMC is marked experimental: said once per trial otherwise
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return build(trial_seed(seed, number))

    def build(own: int) -> Any:
        if sampler == "tpe":
            # constant_liar: trials of a batch asked while their batch-mates still run are steered
            # away from them (each running trial counts as a bad result until told).
            return s.TPESampler(seed=own, multivariate=True, constant_liar=True)
        if sampler == "cmaes":
            return s.CmaEsSampler(seed=own, popsize=batch, warn_independent_sampling=False)   # a generation a batch
        if sampler == "gp":
            return s.GPSampler(seed=own)
        if sampler == "qmc":
            # One scrambled Sobol sequence for the whole search: the same seed each time (the sample's
            # index comes from the study itself).
            return s.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
        return s.RandomSampler(seed=own)

    return make


def _checked_sampler(s: Any) -> Any:
    import optuna

    if not isinstance(s, optuna.samplers.BaseSampler):
        raise UsageError(f"the sampler function returned {s!r}, not an Optuna sampler")
    return s


def _needs(module: str, package: str, what: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise UsageError(f"{what} needs {package}: pip install {package}") from None


def pruner_factory(pruner: str | None | Any, epochs: int) -> Callable[[], Any]:
    """A function () -> a fresh Optuna pruner (each step gets its own: a pruner's cached estimates, such as
    successive halving's automatic minimum resource, never outlive a step). `pruner`: a name of
    :data:`PRUNERS`, None (no pruning), or a :class:`optuna.pruners.BasePruner` (copied for each step).
    Steps are epochs trained (1 after the first epoch)."""
    import copy

    import optuna

    p = optuna.pruners
    if pruner is None or pruner == "none":
        return p.NopPruner
    if isinstance(pruner, p.BasePruner):
        return lambda: copy.deepcopy(pruner)
    if pruner == "median":
        return p.MedianPruner
    if pruner == "halving":
        # min_resource 1: the first rung after epoch 1, from the first batch on ("auto" would wait for
        # complete trials, so it could not prune in the first batch).
        return lambda: p.SuccessiveHalvingPruner(min_resource=1)
    if pruner == "hyperband":
        return lambda: p.HyperbandPruner(min_resource=1, max_resource=epochs)
    raise UsageError(f"unknown pruner {pruner!r}; choose one of: {', '.join(PRUNERS)}, or give an optuna pruner")


def describe(thing: Any) -> Any:
    """How a sampler or pruner is recorded in the search's settings."""
    if thing is None or isinstance(thing, str):
        return thing or "none"
    obj = thing if callable(thing) else type(thing)   # a function or class, or a pruner's class
    return f"user:{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


# ---- the sweep config ------------------------------------------------------------------------------------

def check_config(config: "SweepConfig", space: Mapping[str, Any], metric: str, n_trials: int, batch: int) -> None:
    """Refuse, in one line, a config a search cannot drive: one trial must be one member."""
    from jaxmlp.config import GROUPED

    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    if not 1 <= n_trials <= 1_000_000:
        raise UsageError(f"a search needs 1..1000000 trials, got {n_trials}")
    if not 1 <= batch <= 100_000:
        raise UsageError(f"a search's batch needs 1..100000 trials, got {batch}")
    config.validate()
    for name in GROUPED:
        if len(getattr(config, name)) != 1:
            raise UsageError(f"a search trains one kind of model: give one value of --{name.replace('_', '-')}, "
                             f"not {len(getattr(config, name))}")
    if len(config.seed) != 1:
        raise UsageError(f"a search gives each trial one member: give one --seed, not {len(config.seed)}")
    if config.folds:
        raise UsageError("a search gives each trial one member: cross-validation (--folds) is not supported")
    if config.points is not None:
        raise UsageError("a search draws its own points; leave SweepConfig.points out")
    for name, values in config.hparams.items():
        if name in space:
            raise UsageError(f"{name} is both searched and given fixed; give it one way")
        if len(values) != 1:
            raise UsageError(f"{name} has {len(values)} values: outside the searched space a hyperparameter "
                             "takes one value")
