"""Optuna drives a sweep: ask a batch of trials, train them as one vmapped job, report every epoch, tell.

Each batch of `batch` trials is asked from Optuna, trained as one :func:`jaxmlp.sweep` of that many
members (their points), and after every epoch each member's validation metric is reported to its trial
at step = epochs trained; trials the pruner stops stop training at once (the sweep packs the survivors
into a smaller batch when the training saved outweighs the compile). At the batch's end the other trials are told their value: the metric of the member's final
weights (``results.members[i]["val"]``: the last epoch's, or the best epoch's with early stopping), i.e.
the last value reported. Diverged members are told PRUNED (with their last value), so samplers still see
them as bad. The data are loaded once; every batch reuses the compiled programs (same shapes), so only
the first batch compiles (a last, smaller batch compiles once more for its size).

The run directory `out` holds the study in Optuna's journal file ``journal.log``, one folder per batch
(``batches/000``: the sweep's run directory with its checkpoints, and the step files of
:mod:`jaxmlp.search.optuna_steps`), ``search.json`` and ``plots/``. Calling again with the same `out`
resumes: a search killed at any moment ends with the same trials, values and intermediate values as an
uninterrupted one. That takes three things: samplers are made afresh for every trial from a seed derived
from (seed, trial number), so each ask depends on the study alone; every study step is computed on a
copy, written ahead and applied idempotently (:mod:`~jaxmlp.search.optuna_steps`); and each batch's
sweep resumes exactly from its own checkpoint.

Optuna is an optional extra: ``pip install 'jaxmlp[search]'``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from jaxmlp.callbacks import Callback
from jaxmlp.errors import UsageError
from jaxmlp.search import optuna_report as report
from jaxmlp.search import optuna_setup as setup

if TYPE_CHECKING:
    import optuna

    from jaxmlp.config import SweepConfig
    from jaxmlp.population import Population


@dataclass
class SearchResult:
    """What :func:`optuna_search` found: the study (over the journal in `out`), the best trial's number,
    value and params (complete trials only; None if none completed), one row per trial (see
    ``search.json``), and the totals (``timing``)."""

    study: "optuna.Study"
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    trials: list[dict[str, Any]]
    timing: dict[str, Any]
    out: Path | None = None
    notes: list[str] = field(default_factory=list)


def optuna_search(config: "SweepConfig", space: Mapping[str, Any], n_trials: int, batch: int = 16,
                  out: str | Path | None = None, sampler: str | Callable[[int], Any] = "tpe",
                  pruner: str | Any | None = None, seed: int = 0, metric: str = "val_accuracy",
                  progress: bool = True, plots: bool = True, repack: bool | str = "auto",
                  callbacks: Sequence[Callback] = (), checkpoint_interval_s: float = 30.0) -> SearchResult:
    """Search `space` with Optuna over `n_trials` trials of `config`'s model, `batch` trials trained at once.

    `space`: {hyperparameter: spec} as for :func:`jaxmlp.search.sample` (``(low, high)``, ``Range``,
    ``IntRange``, ``Choice`` or a compact string; log axes from the hyperparameter table). `config`: one
    kind of model (one value of each grouped setting, one seed, no folds); its other hyperparameters fixed.
    `sampler`: tpe (multivariate, constant liar), cmaes (population = `batch`), gp, qmc (Sobol), random,
    or a function seed -> Optuna sampler (called afresh for every trial with the trial's own seed).
    `pruner`: None/"none", median, halving (successive halving from epoch 1), hyperband, or an Optuna
    pruner (copied afresh for every step). `seed`: the search's seed. `metric`: val_accuracy (maximised)
    or val_loss (minimised). `out`: the run directory (None: a temporary one, and the study is returned in
    memory); rerunning with the same `out` resumes. `repack`: whether pruned members leave the compiled
    batch (as :func:`jaxmlp.sweep`'s: "auto" when the training saved outweighs compiling a smaller batch,
    True always, False never: kept in it, masked). `callbacks`: passed on to every batch's sweep (after
    the pruning one). `checkpoint_interval_s`: a batch saves its state after an epoch when this long has
    passed since its start or its previous save: a search killed in a batch trains again up to this long
    (a batch shorter than it starts over), and ends with the same trials and values all the same; 0:
    after every epoch. Without `out` nothing could resume, and batches save nothing.
    """
    setup.require_optuna()
    if out is None:
        import optuna

        from jaxmlp.search.optuna_steps import STUDY_NAME, journal, quiet_optuna

        with tempfile.TemporaryDirectory(prefix="jaxmlp-search-") as tmp:
            res = _search(config, space, n_trials, batch, Path(tmp), sampler, pruner, seed, metric, progress,
                          False, repack, callbacks, None)
            memory = optuna.storages.InMemoryStorage()   # the study outlives the temporary folder
            with quiet_optuna():
                optuna.copy_study(from_study_name=STUDY_NAME, from_storage=journal(Path(tmp) / "journal.log"),
                                  to_storage=memory)
            res.study = optuna.load_study(study_name=STUDY_NAME, storage=memory, sampler=res.study.sampler,
                                          pruner=res.study.pruner)
            res.out = None
            return res
    return _search(config, space, n_trials, batch, Path(out), sampler, pruner, seed, metric, progress, plots,
                   repack, callbacks, checkpoint_interval_s)


def _search(config: "SweepConfig", space: Mapping[str, Any], n_trials: int, batch: int, out: Path,
            sampler: Any, pruner: Any, seed: int, metric: str, progress: bool, plots: bool, repack: bool | str,
            callbacks: Sequence[Callback], checkpoint_interval_s: float | None) -> SearchResult:
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from jaxmlp import checkpoint
    from jaxmlp import data as data_lib
    from jaxmlp import members as members_lib
    from jaxmlp.run import check_out_dir
    from jaxmlp.search.optuna_steps import Journal

    t_start = time.perf_counter()
    import jax

    if jax.process_count() > 1:
        raise UsageError("a search runs in one process (its study is one journal file); run it without "
                         "--num-processes")
    if checkpoint_interval_s is not None and not checkpoint_interval_s >= 0:
        raise UsageError(f"--checkpoint-interval {checkpoint_interval_s:g} is negative; give the seconds between "
                         "a batch's saves (0: after every epoch)")
    spec = setup.settle_space(space)
    setup.check_config(config, spec, metric, n_trials, batch)
    direction = setup.METRICS[metric][0]
    make_sampler = setup.sampler_factory(sampler, seed, batch)
    make_pruner = setup.pruner_factory(pruner, config.epochs)
    check_out_dir(out)
    settings = {"config": config.to_dict(), "space": setup.space_json(spec), "batch": batch,
                "sampler": setup.describe(sampler), "pruner": setup.describe(pruner), "seed": seed, "metric": metric}
    _check_settings(out / "search.json", settings)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "search.json").exists():   # the settings first, so that a resume can be checked
        report.write_json(out / "search.json", {"settings": settings, "n_trials": n_trials, "complete": False})
    journal = Journal(out / "journal.log", direction)

    plan = [min(batch, n_trials - start) for start in range(0, n_trials, batch)]
    members: dict[int, dict[str, Any]] = {}     # trial number -> its member's results record
    batches: list[dict[str, Any]] = []
    # The dataset loads in the background while the study asks the first batch (reading and unzipping
    # Fashion-MNIST takes ~0.3 s here, most of it in zlib, which lets the asking run meanwhile).
    loader = ThreadPoolExecutor(1, thread_name_prefix="jaxmlp-data")
    loading = (loader.submit(_load, config.dataset[0], config.data_dir)
               if not all((out / "batches" / f"{b:03d}" / "told.json").exists() for b in range(len(plan))) else None)
    optuna_s = 0.0
    bar = tqdm(total=n_trials, desc=out.name or "search", unit="trial", disable=not progress, dynamic_ncols=True)
    try:
        for b, size in enumerate(plan):
            folder = out / "batches" / f"{b:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            numbers = journal.step(folder / "asked.json",
                                   lambda study, storage, sid: _ask(study, storage, sid, make_sampler, spec, size, b))
            optuna_s += time.perf_counter() - t0
            if len(numbers) != size:
                raise UsageError(f"{out} holds a search whose batch {b} has {len(numbers)} trials, not {size}: "
                                 "give the same --trials and --batch as before, or another --out")
            points = _points(journal, numbers, spec)
            t_sweep = time.perf_counter()
            if (folder / "told.json").exists():   # trained and told before: its records are on disk
                from jaxmlp.results import Results

                res = Results.read(folder)
            else:
                if not loading.done() and not checkpoint.default_dir(folder).exists():
                    # Compile the batch's programs from the data's labels and shapes while its images load.
                    stand_in = data_lib.stand_in(config.dataset[0], config.data_dir)
                    if stand_in is not None:
                        members_lib.compile_ahead_for(_batch_config(config, stand_in, points))
                dataset = loading.result()   # loaded once for every batch
                pruning = _Pruning(journal, folder, numbers, metric, make_sampler, make_pruner)
                res = _sweep(config, dataset, points, folder, [pruning, *callbacks], repack, b, checkpoint_interval_s)
                optuna_s += pruning.seconds
            sweep_s = time.perf_counter() - t_sweep
            key = setup.METRICS[metric][1]
            outcomes = [(n, m["val"][key], m["status"]) for n, m in zip(numbers, res.members)]
            t0 = time.perf_counter()
            journal.step(folder / "told.json",
                         lambda study, storage, sid: _tell(study, storage, sid, make_sampler, outcomes),
                         pruner=make_pruner())
            optuna_s += time.perf_counter() - t0
            members.update(zip(numbers, res.members))
            batches.append({"batch": b, "trials": numbers, "sweep_s": round(sweep_s, 3), **{k: res.timing.get(k) for k in (
                "compile_s", "train_s", "compiled_epochs", "member_epochs", "member_epochs_full")}})
            bar.update(size)
            best = report.best_row(report.trial_rows(journal.trials(), members), direction)
            if best is not None:
                bar.set_postfix({"best": f"{best['value']:.4f}"})
    finally:
        bar.close()
        loader.shutdown(wait=False)

    rows = report.trial_rows(journal.trials(), members)
    best = report.best_row(rows, direction)
    timing = {"wall_s": round(time.perf_counter() - t_start, 3),
              "train_s": round(sum(x["train_s"] or 0 for x in batches), 3),
              "compile_s": round(sum(x["compile_s"] or 0 for x in batches), 3),
              "optuna_s": round(optuna_s, 3),
              "member_epochs": sum(x["member_epochs"] or 0 for x in batches),
              "member_epochs_full": n_trials * config.epochs, "batches": batches}
    study = journal.study(sampler=make_sampler(len(journal.trials())), pruner=make_pruner())
    notes: list[str] = []
    if plots:
        _, notes = report.write_plots(study, out / "plots")
    report.write_json(out / "search.json", {
        "settings": settings, "n_trials": n_trials, "direction": direction, "complete": True,
        "best": None if best is None else {k: best[k] for k in ("number", "value", "params")},
        "timing": timing, "notes": notes, "trials": rows})
    return SearchResult(study, best and best["number"], best and best["value"], dict(best["params"]) if best else {},
                        rows, timing, out, notes)


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume a search into a run directory that holds another search's (settings differ)."""
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{path} is not a search record jaxmlp can read; choose another --out") from None
    now = json.loads(json.dumps(settings))   # tuples as lists, as read back
    diffs = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if diffs:
        raise UsageError(f"{path.parent} holds another search (different {', '.join(diffs)}); choose another "
                         "--out, or give the same settings to resume it")


def _ask(study: "optuna.Study", storage: Any, sid: int, make_sampler: Callable[[int], Any],
         space: Mapping[str, Any], size: int, b: int) -> list[int]:
    """Ask `size` trials in turn (each with its own fresh sampler) and suggest their values."""
    numbers = []
    for k in range(size):
        number = len(storage.get_all_trials(sid, deepcopy=False))
        study.sampler = make_sampler(number)
        trial = study.ask()
        for name, s in space.items():
            setup.suggest(trial, name, s)
        trial.set_user_attr("jaxmlp_batch", b)
        trial.set_user_attr("jaxmlp_member", k)
        numbers.append(trial.number)
    return numbers


def _points(journal: Any, numbers: list[int], space: Mapping[str, Any]) -> list[dict[str, float]]:
    from jaxmlp import hparams as hp_table

    trials = journal.trials()
    return [{name: hp_table.row(name).check(trials[n].params[name]) for name in space} for n in numbers]


def _load(spec: Any, data_dir: Any) -> Any:
    """The search's dataset, with its fingerprint (hashed here, off the first batch's path: ~0.1 s)."""
    from jaxmlp import data as data_lib

    dataset = data_lib.load(spec, data_dir)
    dataset.fingerprint
    return dataset


def _batch_config(config: "SweepConfig", dataset: Any, points: list[dict[str, float]]) -> "SweepConfig":
    """`config` with the dataset loaded once and the batch's points."""
    from jaxmlp.config import SweepConfig

    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields.update(dataset=[dataset], points=points, hparams=dict(config.hparams))
    return SweepConfig(**fields)


def _sweep(config: "SweepConfig", dataset: Any, points: list[dict[str, float]], folder: Path,
           callbacks: list[Callback], repack: bool | str, b: int, checkpoint_interval_s: float | None) -> Any:
    """Train one batch: `config` with the dataset loaded once and the batch's points; resumes from the
    batch's own checkpoint (None: no checkpoints)."""
    from jaxmlp import checkpoint
    from jaxmlp.run import run_sweep

    saves = checkpoint_interval_s is not None
    return run_sweep(_batch_config(config, dataset, points), folder, progress=False, plots=False,
                     callbacks=callbacks, repack=repack, name=f"batch {b}",
                     checkpoint_dir=checkpoint.DEFAULT if saves else None,
                     checkpoint_interval_s=checkpoint_interval_s if saves else 0.0)


class _Pruning(Callback):
    """After every epoch: report each member's metric to its trial, prune as the pruner says (one study
    step, recorded in ``epoch_<e>.json``), and stop the pruned members."""

    def __init__(self, journal: Any, folder: Path, numbers: list[int], metric: str,
                 make_sampler: Callable[[int], Any], make_pruner: Callable[[], Any]):
        self.journal, self.folder, self.numbers, self.metric = journal, folder, numbers, metric
        self.make_sampler, self.make_pruner = make_sampler, make_pruner
        self.seconds = 0.0

    def on_population(self, population: "Population") -> None:
        t0 = time.perf_counter()
        epoch = population.epoch
        values = population.metric(self.metric)
        active = set(population.active())
        # Members with a number this epoch: those that trained it (patience may have stopped some just now:
        # reported, not pruned).
        items = [(n, v, i in active) for i, (n, v) in enumerate(zip(self.numbers, values)) if v is not None]
        pruned = self.journal.step(self.folder / f"epoch_{epoch}.json",
                                   lambda study, storage, sid: _report_and_prune(study, storage, sid, items, epoch,
                                                                                 self.make_sampler),
                                   pruner=self.make_pruner())
        if pruned:
            population.stop([self.numbers.index(n) for n in pruned], status="pruned", step=epoch)
        self.seconds += time.perf_counter() - t0


def _report_and_prune(study: "optuna.Study", storage: Any, sid: int, items: list[tuple[int, float, bool]],
                      step: int, make_sampler: Callable[[int], Any]) -> list[int]:
    """Report every value at `step`, then ask the pruner about each trial still training, in member order
    (successive halving compares a trial with those that reached its rung before it)."""
    from optuna.trial import TrialState

    ids = {n: storage.get_trial_id_from_study_id_trial_number(sid, n) for n, _, _ in items}
    for n, v, _ in items:
        if step not in storage.get_trial(ids[n]).intermediate_values:
            storage.set_trial_intermediate_value(ids[n], step, float(v))
    pruned = []
    for n, _, training in items:
        if training and study.pruner.prune(study, storage.get_trial(ids[n])):
            storage.set_trial_user_attr(ids[n], "jaxmlp_status", "pruned")
            study.sampler = make_sampler(n)
            study.tell(n, state=TrialState.PRUNED)
            pruned.append(n)
    return pruned


def _tell(study: "optuna.Study", storage: Any, sid: int, make_sampler: Callable[[int], Any],
          outcomes: list[tuple[int, float | None, str]]) -> list[int]:
    """Tell every trial of a trained batch not told yet: COMPLETE with its value; a diverged member's trial
    PRUNED (its last reported value); one without a finite value FAIL."""
    from optuna.trial import TrialState

    told = []
    for n, value, status in outcomes:
        tid = storage.get_trial_id_from_study_id_trial_number(sid, n)
        if storage.get_trial(tid).state.is_finished():
            continue
        storage.set_trial_user_attr(tid, "jaxmlp_status", status)
        study.sampler = make_sampler(n)
        if status == "diverged":
            study.tell(n, state=TrialState.PRUNED)
        elif value is None or not math.isfinite(value):
            study.tell(n, state=TrialState.FAIL)
        else:
            study.tell(n, float(value))
        told.append(n)
    return told
