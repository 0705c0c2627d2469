"""The look of jaxmlp's figures: colours, labels, rcParams, and a bare figure on the Agg canvas."""

from __future__ import annotations

import functools
from typing import Any, Callable

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib import colors as mcolors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120
# Okabe & Ito (2008), reordered so that the first colours are the most distinct on white; yellow last but one.
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
SPLIT_COLOR = {"train": OKABE_ITO[0], "val": OKABE_ITO[1], "test": OKABE_ITO[2]}
SPLIT_STYLE = {"train": ("-", "o"), "val": ("--", "s"), "test": ("-", "o")}
SPLIT_NAME = {"train": "train", "val": "validation", "test": "test"}



class _TableLabels(dict):
    """Labels written here for the settings that split groups (and richer ones for the classic four);
    every other hyperparameter's label comes from its row in the table (jaxmlp.hparams), declared once."""

    def get(self, name: Any, default: Any = None) -> Any:
        if name in self:
            return self[name]
        from jaxmlp import hparams

        return hparams.TABLE[name].title if name in hparams.TABLE else default


class _TableLog:
    """The hyperparameters whose table row says they span decades: a log x axis (symlog when 0 is there)."""

    def __contains__(self, name: Any) -> bool:
        from jaxmlp import hparams

        return name in hparams.TABLE and hparams.TABLE[name].log


LOG_AXES = _TableLog()

PARAM_LABEL = _TableLabels({
    "dropout": "dropout rate (fraction of hidden units dropped)",
    "l1": r"L1 penalty strength $\lambda_1$",
    "l2": r"L2 penalty strength $\lambda_2$",
    "lr": "learning rate",
    "seed": "random seed",
    "fold": "cross-validation fold",
    "batch_size": "batch size (samples)",
    "hidden": "hidden layer widths (units)",
    "optimizer": "optimizer",
    "activation": "activation",
    "model": "model",
    "dataset": "dataset",
    "batch_norm": "batch normalisation",
})
PARAM_TITLE = _TableLabels({"dropout": "dropout rate", "l1": r"L1 strength $\lambda_1$", "l2": r"L2 strength $\lambda_2$",
                            "lr": "learning rate", "batch_size": "batch size", "hidden": "hidden widths",
                            "batch_norm": "batch norm", "model": "model"})
PARAM_SHORT = {"l1": r"$\lambda_1$", "l2": r"$\lambda_2$", "batch_size": "batch", "batch_norm": "BN"}
METRIC_LABEL = {
    "accuracy": "accuracy (%)",
    "loss": "cross-entropy loss (nats)",
    "accuracy_gap": "train − val accuracy (% points)",
    "loss_gap": "val − train loss (nats)",
}
METRIC_TITLE = {"accuracy": "Final accuracy", "loss": "Final loss", "accuracy_gap": "Train − validation accuracy",
                "loss_gap": "Validation − train loss"}

# Viridis without its palest yellows, which thin lines on white would hide.
LINE_CMAP = mcolors.ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.88, 256)), "viridis_lines")

STYLE = {
    "font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 8.5, "legend.framealpha": 0.9, "figure.titlesize": 11,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=OKABE_ITO), "image.cmap": "viridis",
    "lines.linewidth": 1.6, "lines.markersize": 5, "errorbar.capsize": 3,
    "figure.dpi": DPI, "savefig.dpi": DPI,
}


def styled(fn: Callable) -> Callable:
    """Apply :data:`STYLE` while `fn` creates artists (rcParams are read at creation), without changing
    the caller's global matplotlib settings."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Figure, np.ndarray]:
    """A bare Figure on an Agg canvas (no pyplot figure manager, so nothing leaks between calls) and its
    axes as a 2-D array."""
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def hue_colors(n: int) -> list[str]:
    """`n` distinct colours: Okabe-Ito up to eight, else evenly spaced along viridis."""
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    return [mcolors.to_hex(LINE_CMAP(x)) for x in np.linspace(0.0, 1.0, n)]


def noted(label: str, note: str) -> str:
    """``"batch size (samples)"`` + ``"log₂ scale"`` -> ``"batch size (samples, log₂ scale)"``."""
    return f"{label[:-1]}, {note})" if label.endswith(")") else f"{label} ({note})"
