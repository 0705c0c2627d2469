"""Write the README's figures from result files: the study gallery, the benchmark table, the bar runs.

Nothing in those README sections is typed by hand: this reads ``runs/<study>/summary.json`` (written by
each study), ``benchmarks/results/<machine>.json`` (written by ``benchmarks/sweep_speed.py``) and the
``results.json`` of run directories made by the ``jaxmlp`` command (which records its own command line),
copies each study's main figure to ``experiments/gallery/`` and replaces the text between the
``<!-- NAME:start -->`` / ``<!-- NAME:end -->`` markers of README.md.

    python -m experiments.gallery [--runs runs] [--bars runs/bars/*] [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
GALLERY = Path(__file__).resolve().parent / "gallery"


def _pct(x: float) -> str:
    return f"{x:.2f} %"


def _dropout(n: dict) -> str:
    f, s = n["full"], n["subset"]
    same = n.get("not_worse_than_best", {})
    seeds = same.get("full", {}).get("seeds", 3)
    line = (f"best rate {f['best_rate']:g} on the full set: test {_pct(f['best_test_accuracy'])}; on the 5 % "
            f"subset best rate {s['best_rate']:g}: {_pct(s['best_test_accuracy'])} (mean of {seeds} seeds)")
    if same:
        line += f". Full set: {same['full']['statement']}; subset: {same['subset']['statement']}"
    return line


def _same(n: dict, *keys: str) -> str:
    """"; <statement>" of each of ``n["not_worse_than_best"][key]`` that the summary has (older ones lack it),
    led by its key where there are several."""
    same = n.get("not_worse_than_best", {})
    return "".join(f"; {k + ': ' if len(keys) > 1 else ''}{same[k]['statement']}" for k in keys if k in same)


def _lambda(n: dict) -> str:
    f = n["full"]
    return (f"full set, no penalty: test {_pct(f['baseline_test_accuracy'])}; best L1 λ "
            f"{f['L1']['best_lambda']:g}: {_pct(f['L1']['best_test_accuracy'])}; best L2 λ "
            f"{f['L2']['best_lambda']:g}: {_pct(f['L2']['best_test_accuracy'])}" + _same(n, "full L1", "full L2"))


def _weights(n: dict) -> str:
    s = n["first_layer_sparsity"]
    gap = f"; {n['l1_minus_l2_sparsity']['statement']}" if "l1_minus_l2_sparsity" in n else ""
    return (f"first-layer weights with |w| < {n['threshold']:g}: L1 {_pct(s['L1'])}, L2 "
            f"{_pct(s['L2'])}, none {_pct(s['none'])}: {n['sparser']} is sparser{gap}" + _same(n, "penalty"))


def _kfold(n: dict) -> str:
    spread = (f"{n['cv_mean']:.2f} % [{n['cv_ci'][0]:.2f}, {n['cv_ci'][1]:.2f}] (95 % CI, Nadeau-Bengio "
              f"corrected for {n['folds']} folds, one seed)" if "cv_ci" in n
              else f"{n['cv_mean']:.2f} ± {n['cv_std']:.2f} %")
    return (f"5-fold cross-validation accuracy {spread}; the model retrained on all training data: test "
            f"{_pct(n['retrained_test_accuracy'])} (one model, no interval)")


def _optimizers(n: dict) -> str:
    b, d = n["best"], n["deeper"]
    gap = f"; {d['vs_shallow']['statement']}" if "vs_shallow" in d else ""
    return (f"best {b['optimizer']}, lr {b['lr']:g}, batch {b['batch_size']}: test {_pct(b['test_accuracy'])}; "
            f"the deeper 784-{'-'.join(map(str, d['hidden']))}-10 with it: {_pct(d['test_accuracy'])}{gap}"
            + _same(n, "setting"))


def _cnn(n: dict) -> str:
    return (f"best CNN: test {_pct(n['best_cnn_test_accuracy'])} (target {n['target']:g} %); best MLP "
            f"784-512-64-10 on the same epochs: {_pct(n['best_mlp_test_accuracy'])}" + _same(n, "model"))


def _depth(n: dict) -> str:
    archs = {k: v for k, v in n.items() if isinstance(v, dict) and "best_test_accuracy" in v}
    arch, best = max(archs.items(), key=lambda kv: kv[1]["best_test_accuracy"])
    return (f"best {arch} with {best['best_regulariser']} (lr {best['best_lr']:g}): test "
            f"{_pct(best['best_test_accuracy'])}, plain {_pct(best['plain_test_accuracy'])}" + _same(n, arch))


def _generic(n: dict) -> str:
    """The first few scalar numbers of a study's summary."""
    flat = []

    def walk(prefix: str, x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(f"{prefix}{k} ", v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            flat.append(f"{prefix.strip()}: {x:.4g}")
        elif isinstance(x, str):
            flat.append(f"{prefix.strip()}: {x}")

    walk("", n)
    return "; ".join(flat[:4])


# study -> (main figure in runs/<study>/, headline from summary.json's numbers)
STUDIES: dict[str, tuple[str, Callable[[dict], str]]] = {
    "dropout_sweep": ("accuracy_vs_rate.png", _dropout),
    "l1_l2_lambda": ("accuracy_vs_lambda.png", _lambda),
    "l1_vs_l2_weights": ("first_layer_histograms.png", _weights),
    "depth_and_regularizers": ("test_accuracy_by_regulariser.png", _depth),
    "optimizers_lr_batch": ("heatmaps_test_accuracy.png", _optimizers),
    "kfold": ("folds.png", _kfold),
    "cnn": ("cnn_vs_mlp_curves.png", _cnn),
}


def _existing_entry(readme: str, study: str) -> str | None:
    """The README's current gallery entry of `study` (from an earlier run), or None."""
    found = re.search(rf"^### {study}: .*?(?=^### |<!-- gallery:end -->)", readme, re.S | re.M)
    return found.group(0).rstrip() + "\n" if found else None


def gallery(runs: Path, readme: str = "") -> str:
    """Markdown for every study with a full-settings summary under `runs` (figures copied to gallery/);
    a study not run there keeps its entry in `readme` (the README's text), if it has one."""
    GALLERY.mkdir(exist_ok=True)
    parts = []
    for study, (figure, headline) in STUDIES.items():
        path = runs / study / "summary.json"
        if not path.is_file():
            kept = _existing_entry(readme, study)
            parts.append(kept or f"### {study}\n\nNot run yet with full settings: `python -m experiments.{study}`.\n")
            continue
        s = json.loads(path.read_text())
        pngs = [figure] if (runs / study / figure).is_file() else sorted(p.name for p in (runs / study).glob("*.png"))
        image = ""
        if pngs:
            shutil.copyfile(runs / study / pngs[0], GALLERY / f"{study}.png")
            image = f"![{study}](experiments/gallery/{study}.png)\n\n"
        try:
            line = headline(s["numbers"])
        except (KeyError, TypeError):
            line = _generic(s["numbers"])
        parts.append(f"### {study}: {s['title']}\n\n{image}**{line}.** `python -m experiments.{study}` "
                     f"({s['mode']} settings, {s['dataset']}, {s['wall_s']:.0f} s on {s['device']}; "
                     f"details in `runs/{study}/summary.md`).\n")
    return "\n".join(parts)


def benchmarks(results: Path) -> str:
    """A table of every sweep-speed result in benchmarks/results/*.json (benchmarks/sweep_speed.py's; the
    search benchmarks' results sit beside them and are quoted in the README's bars instead)."""
    rows = []
    for path in sorted(results.glob("*.json")):
        b = json.loads(path.read_text())
        if "models" not in b:
            continue
        for model, r in b["models"].items():
            windows = r.get("matmul_windows_flops")
            sustained = f"{statistics.median(windows) / 1e9:.0f}" if windows else "–"
            burst = r.get("fraction_of_burst_peak", r["flops_per_s"] / b["matmul_peak_flops"])
            rows.append(f"| {b['machine']} | {model} | {r['sweep_epoch_s']:.3f} | "
                        f"{r.get('loop_epoch_s', float('nan')):.3f} | {r.get('sweep_over_loop', float('nan')):.1f}× | "
                        f"{r['member_samples_per_s'] / 1e6:.2f} | {r['flops_per_s'] / 1e9:.0f} | "
                        f"{b['matmul_peak_flops'] / 1e9:.0f} / {sustained} | {r['fraction_of_peak']:.2f} | "
                        f"{burst:.2f} | {r.get('single_member_epoch_s', float('nan')):.3f} |")
        extra = []
        if "big_1024" in b:
            extra.append(f"1,024 tiny members in {b['big_1024']['units']} chunks: "
                         f"{b['big_1024']['epoch_s']:.1f} s an epoch")
        if "checkpoint_every_epoch" in b:
            c = b["checkpoint_every_epoch"]
            save = f", {1000 * c['median_save_s']:.0f} ms a save" if "median_save_s" in c else ""
            if "median_save_share" in c:
                save += f", saves {100 * c['median_save_share']:.1f} % of their run's training time"
            extra.append(f"checkpoint every epoch: {100 * c['overhead']:+.1f} % "
                         f"({c['train_s_with']:.2f} s vs {c['train_s_without']:.2f} s{save})")
        extra.append(f"peak memory {b['peak_rss_gib']:.2f} GiB")
        rows.append(f"| {b['machine']} | | {'; '.join(extra)} | | | | | | | | |")
    head = ("| machine | model | sweep s/epoch | loop s/epoch | sweep vs loop | M member-samples/s | GFLOP/s "
            "| matmul GFLOP/s, burst / sustained | of peak | of burst | one member s/epoch |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows) + "\n"


def bars(run_dirs: list[Path]) -> str:
    """One row per run directory: its command, members, compiled programs, the member best on validation
    (its validation and test accuracy), training time, devices."""
    rows = ["| command | members | compiled epochs | best member: val / test accuracy | train s | devices |",
            "|---|---|---|---|---|---|"]
    for d in run_dirs:
        r = json.loads((d / "results.json").read_text())
        scored = [m for m in r["members"] if not m.get("diverged") and (m["val"] or {}).get("accuracy") is not None]
        best = max(scored, key=lambda m: m["val"]["accuracy"])
        command = r.get("command", "(not recorded)")
        rows.append(f"| `{command}` | {len(r['members'])} | {r['timing'].get('compiled_epochs', '–')} | "
                    f"{best['val']['accuracy']:.4f} / {best['test']['accuracy']:.4f} | "
                    f"{r['timing']['train_s']:.1f} | {len(r['devices'])} × {r['devices'][0].split(':')[0]} |")
    return "\n".join(rows) + "\n"


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README has no <!-- {name}:start --> ... <!-- {name}:end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs")
    p.add_argument("--bars", type=Path, nargs="*", default=[], help="run directories of the bar commands")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--sections", default="gallery,benchmarks",
                   help="README sections to rewrite besides the bars (default: gallery,benchmarks)")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    sections = {s for s in args.sections.split(",") if s}
    if "gallery" in sections:
        text = replace_section(text, "gallery", gallery(args.runs, text))
    if "benchmarks" in sections:
        text = replace_section(text, "benchmarks", benchmarks(ROOT / "benchmarks" / "results"))
    if args.bars:
        text = replace_section(text, "bars", bars(args.bars))
    args.readme.write_text(text)
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
