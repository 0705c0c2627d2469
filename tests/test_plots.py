"""Figures of a run, drawn from its files: tiny real sweeps on synthetic data, then plot_run and helpers."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import warnings
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colors as mcolors
from matplotlib.container import ErrorbarContainer
from scipy.stats import t as t_dist

from jaxmlp import plots, stats
from jaxmlp.cli import main
from jaxmlp.config import SweepConfig
from jaxmlp.errors import UsageError
from jaxmlp.results import Results
from jaxmlp.run import run_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _sweep(synthetic_dir: Path, out: Path, **kw) -> Path:
    config = SweepConfig(data_dir=str(synthetic_dir), hidden=[(16,)], batch_size=[32], epochs=2, **kw)
    run_sweep(config, out, progress=False, plots=False)
    return out


@pytest.fixture(scope="module")
def dropout_run(synthetic_dir, tmp_path_factory) -> Path:
    return _sweep(synthetic_dir, tmp_path_factory.mktemp("runs") / "dropout", dropout=[0.0, 0.5], seed=[0, 1])


@pytest.fixture(scope="module")
def grid_run(synthetic_dir, tmp_path_factory) -> Path:
    return _sweep(synthetic_dir, tmp_path_factory.mktemp("runs") / "grid", l1=[0.0, 1e-4], l2=[0.0, 1e-3])


@pytest.fixture(scope="module")
def single_run(synthetic_dir, tmp_path_factory) -> Path:
    return _sweep(synthetic_dir, tmp_path_factory.mktemp("runs") / "single")


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR", f"{path.name} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _check_pngs(paths: list[Path], expected: set[str]) -> None:
    assert {p.name for p in paths} == expected
    for p in paths:
        assert p.parent.name == "plots" and p.is_file()
        w, h = _png_size(p)
        # About 6 x 4 in (or a little wider for panels) at 120 dpi, plus tight bounding boxes.
        assert 500 <= w <= 1600 and 350 <= h <= 1200, (p.name, w, h)
        assert 10_000 < p.stat().st_size < 1_000_000, (p.name, p.stat().st_size)


def _members(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "results.json").read_text())["members"]


def test_dropout_sweep_with_seeds_gives_comparison_figures(dropout_run):
    paths = plots.plot_run(dropout_run)
    _check_pngs(paths, {"accuracy_vs_dropout.png", "loss_vs_dropout.png", "gap_vs_dropout.png",
                        "learning_curves.png"})
    assert sorted(p.name for p in (dropout_run / "plots").iterdir()) == sorted(p.name for p in paths)


def test_l1_l2_grid_gives_heatmap_and_log_axes(grid_run):
    paths = plots.plot_run(grid_run)
    _check_pngs(paths, {f"{kind}_vs_{p}.png" for kind in ("accuracy", "loss", "gap") for p in ("l1", "l2")}
                | {"learning_curves.png", "learning_curves_by_l2.png", "heatmap_l1_l2_test_accuracy.png"})
    res = Results.read(grid_run)
    # The λ lists include 0: a symmetric log axis keeps it in view.
    ax = plots.metric_vs_param(res, "l1", "accuracy")
    assert ax.get_xscale() == "symlog"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.0001"]
    # One line per split and l2 value: validation/test × l2 ∈ {0, 0.001}.
    assert sorted(line.get_label() for line in ax.get_lines()) == sorted(
        f"{s}, $\\lambda_2$={v}" for s in ("validation", "test") for v in ("0", "0.001"))
    # The heatmap cell (l1=0.0001, l2=0) holds that member's test accuracy, in %.
    hm = plots.heatmap(res, "l1", "l2")
    member = next(m for m in _members(grid_run) if m["hparams"]["l1"] == 1e-4 and m["hparams"]["l2"] == 0.0)
    cell = next(t for t in hm.texts if t.get_position() == (1, 0))
    assert cell.get_text() == f"{100 * member['test']['accuracy']:.1f}"
    assert len(hm.texts) == 4
    # The learning curves' colour scale for λ is logarithmic around 0 as well.
    fig = plots.learning_curves(res, "l1")
    (cbar,) = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    assert cbar.get_yscale() == "symlog"
    assert [t.get_text() for t in cbar.get_yticklabels()] == ["0", "0.0001"]
    # Members with λ1 = 0 and 0.0001 get the two ends of the colour scale, in every panel.
    colours = {mcolors.to_hex(line.get_color()) for line in fig.axes[0].get_lines()}
    assert colours == {mcolors.to_hex(plots.LINE_CMAP(0.0)), mcolors.to_hex(plots.LINE_CMAP(1.0))}


def test_single_member_gets_learning_curves_only(single_run):
    paths = plots.plot_run(single_run)
    _check_pngs(paths, {"learning_curves.png"})
    res = Results.read(single_run)
    fig = plots.learning_curves(res)
    loss_ax = fig.axes[0]
    history = [json.loads(line) for line in (single_run / "history.jsonl").read_text().splitlines()]
    train = next(line for line in loss_ax.get_lines() if line.get_label() == "train")
    np.testing.assert_allclose(train.get_ydata(), [h["train_loss"][0] for h in history])
    np.testing.assert_array_equal(train.get_xdata(), [1, 2])


def test_error_bars_are_95_percent_intervals_over_seeds_from_results_json(dropout_run):
    members = _members(dropout_run)
    ax = plots.metric_vs_param(Results.read(dropout_run), "dropout", "accuracy")
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert set(bars) == {"validation", "test"}
    for split, label in (("test", "test"), ("val", "validation")):
        acc = [100 * m[split]["accuracy"] for m in members if m["hparams"]["dropout"] == 0.5]
        assert len(acc) == 2
        mean, std = (acc[0] + acc[1]) / 2, abs(acc[0] - acc[1]) / np.sqrt(2)   # sample std (ddof=1) of two
        half = t_dist.ppf(0.975, 1) * std / np.sqrt(2)                         # t interval, 1 degree of freedom
        data_line, _, (barcol,) = bars[label].lines
        assert list(data_line.get_xdata()) == [0.0, 0.5]
        assert data_line.get_ydata()[1] == pytest.approx(mean)
        (x0, lo), (x1, hi) = barcol.get_segments()[1]
        assert x0 == x1 == 0.5
        assert (hi - lo) / 2 == pytest.approx(half)
        assert (lo + hi) / 2 == pytest.approx(mean)
    assert ax.get_title().endswith("mean and 95 % CI (t) over 2 seeds, n = 2 per point")


def test_intervals_from_hand_written_results_with_folds_and_a_diverged_member(tmp_path):
    """No training: 2 rates × 2 seeds × 5 folds written by hand; one member diverged (NaN)."""
    members = []
    for rate in (0.1, 0.5):
        for seed in (0, 1):
            for fold in range(5):
                acc = 0.8 - 0.1 * rate + 0.01 * fold + 0.005 * seed
                members.append({"index": len(members), "hparams": {"dropout": rate, "seed": seed, "fold": fold},
                                "best_epoch": 1, "epochs_run": 1, "stopped_early": False,
                                "val": {"loss": 0.5, "accuracy": acc}, "test": {"loss": 0.5, "accuracy": acc}})
    members[0]["test"]["accuracy"] = float("nan")
    (tmp_path / "results.json").write_text(json.dumps({"config": {"folds": 5, "epochs": 1}, "members": members}))
    res = Results.read(tmp_path)
    ax = plots.metric_vs_param(res, "dropout", "accuracy", splits=("test",))
    (container,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    (x0, lo), (x1, hi) = container.lines[2][0].get_segments()[1]
    expected = stats.mean_interval([100 * m["test"]["accuracy"] for m in members[10:]], folds=5)
    assert (lo, hi) == (pytest.approx(expected.low), pytest.approx(expected.high))
    assert ax.get_title().endswith("mean and 95 % CI (t, Nadeau-Bengio corrected for 5 folds) over 2 seeds × "
                                   "5 folds, n = 9–10 per point")
    hm = plots.heatmap(res, "dropout", "seed")   # cells over 5 folds, each with its interval
    cell = next(t for t in hm.texts if t.get_position() == (1, 0))
    ci = stats.mean_interval([100 * m["test"]["accuracy"] for m in members[10:15]], folds=5)
    assert cell.get_text() == f"{ci.mean:.1f}\n±{ci.half_width:.1f}"


def test_gap_is_train_minus_val_at_the_tested_epoch(dropout_run):
    members = _members(dropout_run)
    last = json.loads((dropout_run / "history.jsonl").read_text().splitlines()[-1])
    fig = plots.gap_vs_param(Results.read(dropout_run), "dropout")
    top, bottom = fig.axes
    for ax, key_a, key_b, scale in ((top, "train_accuracy", "val_accuracy", 100.0),
                                    (bottom, "val_loss", "train_loss", 1.0)):
        gaps = [scale * (last[key_a][m["index"]] - last[key_b][m["index"]])
                for m in members if m["hparams"]["dropout"] == 0.0]
        (container,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert container.lines[0].get_ydata()[0] == pytest.approx(np.mean(gaps))


def test_plot_run_needs_only_the_files(dropout_run, tmp_path):
    # A copy holding only the two files: no checkpoints, no live objects, and no jax import at all.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("results.json", "history.jsonl"):
        shutil.copy(dropout_run / name, copy / name)
    # A member that stopped: its history entries are None from epoch 2 on; its line just ends.
    lines = [json.loads(line) for line in (copy / "history.jsonl").read_text().splitlines()]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        lines[1][key][3] = None
    (copy / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    code = ("import sys; from jaxmlp.plots import plot_run; "
            f"print(len(plot_run({str(copy)!r}))); print('jax' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "False"]
    _check_pngs(sorted((copy / "plots").iterdir()), {"accuracy_vs_dropout.png", "loss_vs_dropout.png",
                                                     "gap_vs_dropout.png", "learning_curves.png"})
    fig = plots.learning_curves(Results.read(copy))
    ys = [line.get_ydata() for line in fig.axes[0].get_lines()]
    assert sum(np.isnan(y[1]) for y in ys) == 1 and len(ys) == 4


def test_run_dir_without_results_json_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "history.jsonl").write_text("")
    with pytest.raises(UsageError, match="holds no results.json"):
        plots.plot_run(tmp_path)
    assert not (tmp_path / "plots").exists()
    assert main(["plot", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxmlp: error: ") and "holds no results.json" in err and err.count("\n") == 1


def test_helpers_reject_unknown_settings_and_metrics(single_run):
    res = Results.read(single_run)
    with pytest.raises(UsageError, match="'momentum' is not a setting"):
        plots.metric_vs_param(res, "momentum")
    with pytest.raises(UsageError, match="unknown metric 'f1'"):
        plots.member_values(res, "f1")


def test_many_lines_keep_the_axes_their_size(synthetic_dir, tmp_path):
    """40 long legend entries (20 λ₂ × lr combinations, validation and test) beside one axes: the figure
    grows to hold them instead of constrained layout squeezing the axes to nothing."""
    run = _sweep(synthetic_dir, tmp_path / "many", l1=[0.0, 1e-4], l2=[0.0, 1e-3],
                 lr=[float(x) for x in np.geomspace(1e-4, 1e-2, 10)])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*constrained_layout not applied.*")
        fig = plots.metric_vs_param(Results.read(run), "l1").figure
        fig.savefig(tmp_path / "l1.png")
    ax = fig.axes[0]
    assert len(ax.get_legend().get_texts()) == 40
    assert ax.get_position().width * fig.get_figwidth() > 3.0   # inches: the axes kept most of its width


def test_sampled_points_are_drawn_as_points_by_split(synthetic_dir, tmp_path):
    """64 random points: one legend entry per split (not one line per member), and no heatmap (no grid)."""
    from jaxmlp.search import sample

    points = sample({"lr": (1e-4, 1e-1), "dropout": (0.0, 0.6)}, 64, seed=0)
    run = _sweep(synthetic_dir, tmp_path / "sampled", points=points)
    ax = plots.metric_vs_param(Results.read(run), "lr")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["validation", "test"]
    written = plots.plot_run(run)
    assert not [p for p in written if p.name.startswith("heatmap")]
