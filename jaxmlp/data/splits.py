"""Seeded, stratified index sets over a dataset's labels: subsets, a validation split, k folds."""

from __future__ import annotations

import numpy as np

from jaxmlp.errors import UsageError


def _class_orders(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """For each class present, its sample indices in a random order."""
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(int(labels.max(initial=-1)) + 1)]


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset with `fraction` of every class (at least one sample per class)."""
    if not 0.0 < fraction <= 1.0:
        raise UsageError(f"--train-fraction must lie in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    parts = [order[:max(1, round(fraction * len(order)))] for order in _class_orders(labels, rng) if len(order)]
    return np.sort(np.concatenate(parts))


def train_val_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of positions 0..len(labels)-1 into (train, validation) indices."""
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed + 1)
    val = [order[:round(val_fraction * len(order))] for order in _class_orders(labels, rng)]
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    if len(val) == 0 or len(val) == len(labels):
        raise UsageError(f"{len(labels)} training samples with --val-fraction {val_fraction} leave an empty "
                         "training or validation set; use more data (--train-fraction) or another fraction")
    return np.setdiff1d(np.arange(len(labels)), val), val


def kfold_indices(labels: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified K-fold split into folds of equal size (so the fold axis can be vmapped).

    Returns (train, val) index arrays of shape (K, (K-1)*n) and (K, n), n = len(labels) // K; up to K-1
    samples that do not fill a fold are left out of every fold.
    """
    counts = np.bincount(labels) if len(labels) else np.zeros(1, np.int64)
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    if folds < 2:
        raise UsageError(f"--folds must be at least 2, got {folds}")
    if folds > smallest:
        raise UsageError(f"--folds {folds} exceeds the {smallest} samples of the rarest class; "
                         f"use at most {smallest} folds or more training data")
    rng = np.random.default_rng(seed + 2)
    order = np.concatenate(_class_orders(labels, rng))  # class by class, shuffled within each class
    size = len(labels) // folds
    val = np.stack([np.sort(order[f::folds][:size]) for f in range(folds)])
    train = np.stack([np.sort(np.concatenate([val[g] for g in range(folds) if g != f])) for f in range(folds)])
    return train, val
