"""A learnable synthetic stand-in for Fashion-MNIST, written as the four standard IDX files.

Kept apart from conftest.py so that it imports without pytest: ``benchmarks/sweep_speed.py`` uses it on
machines that have no dataset (and perhaps no pytest), such as a lent GPU machine without internet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxmlp.idx import write_idx


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A learnable 10-class problem: class c lights a 6x6 block at a class-specific place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, col = 2 + 6 * (c // 3), 2 + 8 * (c % 3)
        images[i, r:r + 6, col:col + 6] = rng.integers(180, 255, size=(6, 6))
    return images, labels.astype(np.uint8)


def write_dataset(folder: Path, n_train: int = 600, n_test: int = 200, gz: bool = True, seed: int = 0) -> Path:
    """Write the four standard IDX files of a synthetic dataset into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    tr_x, tr_y = make_images(n_train, seed)
    te_x, te_y = make_images(n_test, seed + 1)
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", tr_x)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", tr_y)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", te_x)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", te_y)
    return folder
