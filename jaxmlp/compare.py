"""Which values of a setting really differ: each value against the best (or a baseline), paired over seeds.

``compare(run, by="dropout")`` returns a pandas data frame, one row per value: n, mean and its 95 %
interval, the paired difference to the best value (or to `baseline`) with its interval, the raw and the
Holm-corrected p-value, and whether the value is *not significantly worse* than the reference.
``jaxmlp compare RUN --by dropout`` prints the same as a table and one sentence. The statistics are those
of :mod:`jaxmlp.stats`; the pandas-free :func:`comparison` serves the command line and the studies.

Pairing: two members form a pair when they agree on every setting but `by` (seed and fold included), so
they shared initialisation, minibatch order and dropout draws. Members whose number is missing or not
finite (diverged) are counted out, and the count is reported. The best value is chosen on the same
numbers it is then compared on, which favours it slightly: read "not significantly worse" as a
screening, not a proof of equivalence.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from jaxmlp.errors import UsageError
from jaxmlp.results import Results
from jaxmlp.values import REPLICATES, check_param, distinct, fmt, key, member_values, sort_key

NAMES = {"dropout": ("rate", "rates"), "lr": ("learning rate", "learning rates"),
         "batch_size": ("batch size", "batch sizes"), "optimizer": ("optimizer", "optimizers"),
         "l1": ("L1 strength", "L1 strengths"), "l2": ("L2 strength", "L2 strengths")}
# The level of jaxmlp.stats.LEVEL, not imported from it: jaxmlp/__init__.py imports this module (so that
# `jaxmlp.compare` stays the function), and scipy.stats, which jaxmlp.stats loads, takes ~0.7 s to import.
LEVEL = 0.95
COLUMNS = ("value", "n", "mean", "ci_low", "ci_high", "ci_method", "pairs", "diff", "diff_low", "diff_high",
           "diff_sd", "p", "p_holm", "not_worse", "excluded")


@dataclass
class Comparison:
    """Every value of `by` against `reference`: ``rows`` has one dict per value (keys :data:`COLUMNS`)."""

    by: str
    metric: str
    split: str
    reference: Any
    reference_kind: str          # "best" or "baseline"
    level: float
    pairing: str                 # what pairs the members, e.g. "5 seeds" or "3 seeds × 5 folds"
    assumption: str              # what the intervals assume about the replicates
    folds: int = 0
    excluded: int = 0            # members counted out (missing or non-finite numbers)
    higher_better: bool = True
    rows: list[dict[str, Any]] = field(default_factory=list)

    def not_worse(self) -> list[Any]:
        """The values not significantly worse than the reference (the reference among them)."""
        return [r["value"] for r in self.rows if r["not_worse"]]

    def frame(self) -> Any:
        """The rows as a pandas DataFrame (the value column named after `by`); the rest in ``.attrs``."""
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("compare returns a pandas data frame: pip install 'jaxmlp[frames]'") from None
        df = pd.DataFrame(self.rows, columns=list(COLUMNS)).rename(columns={"value": self.by})
        df.attrs.update({k: v for k, v in asdict(self).items() if k != "rows"})
        return df

    @classmethod
    def from_frame(cls, df: Any) -> "Comparison":
        rows = df.rename(columns={df.attrs["by"]: "value"}).to_dict("records")
        return cls(**df.attrs, rows=rows)


def compare(run_or_results: Results | str | os.PathLike, by: str = "dropout", baseline: Any = None,
            metric: str = "accuracy", split: str = "test", *, level: float = LEVEL,
            where: dict[str, Any] | None = None) -> Any:
    """A pandas DataFrame comparing every value of `by` with the best one (or with `baseline`), paired
    over seeds and folds; see :func:`comparison` for the arguments and :class:`Comparison` for the
    columns. :func:`format_comparison` writes it as text. Needs pandas (``pip install 'jaxmlp[frames]'``)."""
    return comparison(run_or_results, by, baseline, metric, split, level=level, where=where).frame()


def comparison(run_or_results: Results | str | os.PathLike, by: str = "dropout", baseline: Any = None,
               metric: str = "accuracy", split: str = "test", *, level: float = LEVEL,
               where: dict[str, Any] | None = None) -> Comparison:
    """Compare every value of `by` with the best one (highest mean accuracy, lowest loss or gap) or with
    `baseline` on `metric` at `split` (see :func:`jaxmlp.values.member_values`): per value the mean and
    its interval, the paired difference to the reference, two-sided paired t p-values (Holm-corrected
    over the values) and the not-significantly-worse flag. `where` keeps only members with these
    settings. Raises :class:`UsageError` for an unknown setting or a baseline the run lacks."""
    from jaxmlp import stats

    res = run_or_results if isinstance(run_or_results, Results) else Results.read(run_or_results)
    check_param(res, by)
    per_member = member_values(res, metric, split)
    members = [(m["hparams"], v if _counts(m, split) else math.nan) for m, v in zip(res.members, per_member)
               if not where or all(key(m["hparams"].get(k)) == key(w) for k, w in where.items())]
    # value -> {settings other than `by` (the pair): number}
    groups: dict[Any, dict[tuple, float]] = {}
    for hp, v in members:
        pair = tuple(sorted((k, key(x)) for k, x in hp.items() if k != by))
        groups.setdefault(key(hp.get(by)), {})[pair] = float(v)
    values = sorted(groups, key=sort_key)
    if len(values) < 2:
        raise UsageError(f"{by!r} takes {len(values)} value(s) in these members: nothing to compare")
    folds = int(res.config.get("folds") or 0) if "fold" in res.members[0]["hparams"] else 0
    higher = metric == "accuracy"
    sign = 1.0 if higher else -1.0
    means = {v: stats.mean_sd(list(groups[v].values()))[0] for v in values}
    if baseline is None:
        finite = [v for v in values if math.isfinite(means[v])]
        if not finite:
            raise UsageError(f"every member's {split} {metric} is missing or diverged: nothing to compare")
        reference, kind = max(finite, key=lambda v: sign * means[v]), "best"
    else:
        reference, kind = find_value(values, baseline, by), "baseline"
    comp = Comparison(by, metric, split, reference, kind, level, _pairing(res, by, members),
                      _assumption(folds), folds, int(np.sum(~np.isfinite([v for _, v in members]))), higher)
    ref = groups[reference]
    for v in values:
        pairs = sorted(set(groups[v]) & set(ref))
        d = stats.paired([groups[v][p] for p in pairs], [ref[p] for p in pairs], level, folds)
        ci = stats.mean_interval(list(groups[v].values()), level, folds)
        same = v == reference
        comp.rows.append({"value": v, "n": ci.n, "mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high,
                          "ci_method": ci.method, "pairs": d.n, "diff": 0.0 if same else d.diff,
                          "diff_low": math.nan if same else d.low, "diff_high": math.nan if same else d.high,
                          "diff_sd": d.sd, "p": math.nan if same else d.p,
                          "excluded": len(groups[v]) - ci.n})
    for row, p_holm in zip(comp.rows, stats.holm([r["p"] for r in comp.rows])):
        worse = sign * row["diff"] < 0
        row["p_holm"] = float(p_holm)
        row["not_worse"] = not (worse and p_holm < 1.0 - level)
    return comp


def _counts(member: dict[str, Any], split: str) -> bool:
    """Whether a member's numbers count: not marked diverged and, at a val or test split, a finite loss
    (a diverged member's accuracy is a finite chance level; its loss is what shows the divergence)."""
    if member.get("diverged"):
        return False
    loss = (member.get(split) or {}).get("loss", 0.0) if split in ("val", "test") else 0.0
    return loss is not None and math.isfinite(loss)


def find_value(values: Sequence[Any], wanted: Any, by: str) -> Any:
    """The value among `values` equal to `wanted` (a value, or its text as typed on the command line)."""
    for v in values:
        if v == wanted or fmt(v) == str(wanted) or (isinstance(wanted, str) and _same_number(v, wanted)):
            return v
    raise UsageError(f"{wanted} is not a value of {by!r} in this run; its values: "
                     f"{', '.join(fmt(v) for v in values)}")


def _same_number(v: Any, text: str) -> bool:
    try:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isclose(v, float(text))
    except ValueError:
        return False


def _pairing(res: Results, by: str, members: list[tuple[dict, float]]) -> str:
    """"5 seeds", "3 seeds × 5 folds": the other settings that vary among the compared members."""
    parts = []
    for axis in dict.fromkeys(k for hp, _ in members for k in hp):
        n = len({key(hp.get(axis)) for hp, _ in members})
        if axis != by and n > 1:
            parts.append(f"{n} {axis}s" if axis in REPLICATES else f"{n} {axis} values")
    return " × ".join(parts) or "one member per value"


def _assumption(folds: int) -> str:
    if folds >= 2:
        return (f"{folds}-fold results: Nadeau-Bengio corrected variance (assumes correlation 1/{folds} "
                "between folds)")
    return "seeds taken as independent repeats"


# ---- text ------------------------------------------------------------------------------------------------

def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> str:
    """Rows of strings as an aligned plain-text table (what a terminal shows)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join(([title] if title else []) + [line(headers), line(["-" * w for w in widths])]
                     + [line(r) for r in rows])


def _num(x: float, digits: int) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return f"{100 * x:.3g} %"


def _span(low: float, high: float, digits: int) -> str:
    return "–" if not (math.isfinite(low) and math.isfinite(high)) else f"{low:.{digits}f} – {high:.{digits}f}"


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def values_text(values: Sequence[Any], chosen: Sequence[Any]) -> str:
    """`chosen` among the sorted `values` as text, neighbours joined into ranges: "0.01–0.1, 0.5"."""
    runs: list[list[Any]] = []
    for i, v in enumerate(values):
        if v in chosen:
            if runs and values.index(runs[-1][-1]) == i - 1:
                runs[-1].append(v)
            else:
                runs.append([v])
    return ", ".join(fmt(r[0]) if len(r) == 1 else f"{fmt(r[0])}–{fmt(r[-1])}" for r in runs)


def sentence(comp: Comparison) -> str:
    """One sentence: the values not significantly worse than the reference, and on what it rests."""
    one, name = NAMES.get(comp.by, (f"value of {comp.by}", f"values of {comp.by}"))
    values = [r["value"] for r in comp.rows]
    kept = comp.not_worse()
    ref = f"{'the baseline ' if comp.reference_kind == 'baseline' else ''}{fmt(comp.reference)}"
    how = (f"paired over {comp.pairing}, Holm-corrected, {_pct(comp.level)}"
           + (f"; Nadeau-Bengio corrected for {comp.folds} folds" if comp.folds else ""))
    if len(kept) == len(values):
        text = f"no {one} is significantly worse than {ref}"
    elif kept == [comp.reference]:
        text = f"every other {one} is significantly worse than {ref}"
    else:
        text = f"{name} {values_text(values, kept)} are not significantly worse than {ref}"
    out = f"{text} ({how})"
    if comp.excluded:
        out += f"; {comp.excluded} member(s) with a missing or diverged {comp.split} {comp.metric} counted out"
    return out


def format_comparison(comp: Comparison | Any) -> str:
    """A :class:`Comparison` (or the frame :func:`compare` returned) as a plain-text table and sentence."""
    if not isinstance(comp, Comparison):
        comp = Comparison.from_frame(comp)
    digits = 2 if comp.metric.startswith("accuracy") else 4
    unit = "%" if comp.metric == "accuracy" else "points" if comp.metric == "accuracy_gap" else "nats"
    ref = "best" if comp.reference_kind == "best" else "baseline"
    rows = []
    for r in comp.rows:
        mark = f" ({ref})" if r["value"] == comp.reference else ""
        rows.append([fmt(r["value"]) + mark, str(r["n"]), _num(r["mean"], digits),
                     _span(r["ci_low"], r["ci_high"], digits),
                     _num(r["diff"], digits), _span(r["diff_low"], r["diff_high"], digits),
                     _p(r["p"]), _p(r["p_holm"]), "yes" if r["not_worse"] else "no"])
    level = _pct(comp.level)
    headers = [comp.by, "n", "mean", f"{level} CI", f"diff vs {ref}", f"{level} CI", "p", "Holm p", "not worse"]
    title = (f"{comp.split} {comp.metric} ({unit}) by {comp.by}; differences paired over {comp.pairing}; "
             f"{comp.assumption}")
    return text_table(headers, rows, title) + "\n\n" + sentence(comp) + "."


def power_text(comp: Comparison, diff: float, target: float = 0.8) -> str:
    """How many seeds detect a true difference `diff` with probability `target`, from the run's own
    paired spread (the median sd of the differences to the reference)."""
    from jaxmlp import stats

    sds = [r["diff_sd"] for r in comp.rows if r["value"] != comp.reference and math.isfinite(r["diff_sd"])]
    if not sds:
        return "no paired spread to estimate power from: the run needs at least 2 seeds"
    sd, alpha, m = float(np.median(sds)), 1.0 - comp.level, max(len(comp.rows) - 1, 1)
    one, holm = (stats.seeds_needed(diff, sd, a, target, comp.folds) for a in (alpha, alpha / m))
    count = lambda n: "more seeds than any count can give (the fold correction bounds the power)" \
        if n is None else f"{n} seed(s)"
    unit = "points" if comp.metric.startswith("accuracy") else "nats"
    return (f"to detect a true difference of {diff:g} {unit} with {_pct(target)} power (two-sided, "
            f"{_pct(comp.level)}), given the median sd {sd:.3g} {unit} of the paired differences here: "
            f"{count(one)} for one comparison, {count(holm)} with Holm over {m} comparisons (its strictest step)")


def run_command(run_dir: str | os.PathLike, by: str, baseline: str | None, metric: str, split: str,
                power: float | None) -> str:
    """What ``jaxmlp compare`` prints."""
    comp = comparison(run_dir, by, baseline, metric, split)
    out = format_comparison(comp)
    if power is not None:
        if not power > 0:
            raise UsageError(f"--power takes a positive difference, got {power:g}")
        out += "\n" + power_text(comp, power) + "."
    return out
