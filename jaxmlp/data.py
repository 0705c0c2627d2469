"""Named datasets as numpy arrays: where they come from, splits, stratified subsets and k-fold indices.

Sources, tried in this order for a named dataset:
1. ``data_dir`` (``--data-dir``) or ``$JAXMLP_DATA_DIR``: the four standard IDX files, ``.gz`` or raw,
   directly in that folder or in a sub-folder named after the dataset;
2. the system copy installed by Debian's ``dataset-fashion-mnist`` (Fashion-MNIST only);
3. tensorflow-datasets (see :mod:`jaxmlp.tfds_source`), which needs a network the first time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxmlp.errors import UsageError
from jaxmlp.idx import read_idx

DATASETS = ("fashion_mnist", "mnist")
NUM_CLASSES = 10
SYSTEM_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
FILES = {  # split -> (images file, labels file), without the optional .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Dataset:
    """A dataset's raw splits: uint8 images (N, 28, 28) and int32 labels (N,), plus where it came from."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


def check_name(name: str) -> str:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return name


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _idx_folder(folder: Path, name: str) -> Path | None:
    """The folder holding all four IDX files: `folder` itself or `folder/<name>`; None if neither."""
    for candidate in (folder / name, folder):
        if all(_find_file(candidate, stem) for pair in FILES.values() for stem in pair):
            return candidate
    return None


def read_idx_files(name: str, paths: dict[str, os.PathLike], source: str) -> Dataset:
    """Read and validate the four IDX files of one dataset, given by their stems in `FILES` (e.g.
    ``"train-images-idx3-ubyte"``); `source` names where they came from in the Dataset and in errors."""
    arrays = {}
    for split, (images_stem, labels_stem) in FILES.items():
        images = read_idx(paths[images_stem], expect_ndim=3)
        labels = read_idx(paths[labels_stem], expect_ndim=1).astype(np.int32)
        if images.shape[0] != labels.shape[0]:
            raise UsageError(f"{source}: {split} has {images.shape[0]} images but {labels.shape[0]} labels; "
                             "the files do not belong together")
        if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
            raise UsageError(f"{source}: {split} images are {images.dtype} {images.shape[1:]}, "
                             "expected uint8 28x28")
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise UsageError(f"{source}: {split} labels must lie in 0..{NUM_CLASSES - 1}")
        arrays[split] = (images, labels)
    return Dataset(name, *arrays["train"], *arrays["test"], source=source)


def read_idx_folder(folder: Path, name: str) -> Dataset:
    """Read and validate the four IDX files (.gz or raw) of one dataset from a folder."""
    paths = {stem: _find_file(folder, stem) for pair in FILES.values() for stem in pair}
    return read_idx_files(name, paths, str(folder))


def load(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a named dataset from the first source that has it (see the module docstring)."""
    check_name(name)
    tried = []
    user_dir = data_dir if data_dir is not None else os.environ.get("JAXMLP_DATA_DIR")
    if user_dir:
        user_dir = Path(user_dir)
        if not user_dir.is_dir():
            raise UsageError(f"data directory {user_dir} does not exist; give --data-dir a folder holding "
                             "the four IDX files")
        folder = _idx_folder(user_dir, name)
        if folder is None:
            missing = [s for pair in FILES.values() for s in pair if _find_file(user_dir, s) is None]
            raise UsageError(f"{user_dir} lacks {', '.join(missing)} (.gz or raw); put the four IDX files of "
                             f"{name} there")
        return read_idx_folder(folder, name)
    tried.append("--data-dir / JAXMLP_DATA_DIR (not set)")
    system = SYSTEM_DIRS.get(name)
    if system is None:
        tried.append(f"system copy (Debian packages only Fashion-MNIST, not {name})")
    elif _idx_folder(system, name) is not None:
        return read_idx_folder(system, name)
    else:
        tried.append(f"Debian's dataset-fashion-mnist at {system} (not installed: apt-get install "
                     "dataset-fashion-mnist)")
    from jaxmlp import tfds_source  # imported late: tensorflow-datasets is slow to import

    try:
        return tfds_source.load(name)
    except tfds_source.Unavailable as e:
        tried.append(f"tensorflow-datasets ({e})")
    raise UsageError(f"no copy of {name} found; tried " + "; ".join(tried))


# ---- preprocessing -----------------------------------------------------------------------------------

def preprocess(images: np.ndarray, flatten: bool = True) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float32 in [0, 1], shaped (N, 784) for MLPs or (N, 28, 28, 1) for CNNs."""
    x = images.astype(np.float32) / np.float32(255.0)
    return x.reshape(len(x), -1) if flatten else x.reshape(*x.shape[:3], 1)


# ---- splits ------------------------------------------------------------------------------------------

def _class_orders(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """For each class, its sample indices in a random order."""
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(NUM_CLASSES)]


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
    val = np.sort(np.concatenate(val))
    if len(val) == 0 or len(val) == len(labels):
        raise UsageError(f"--val-fraction {val_fraction} leaves an empty training or validation set "
                         f"of {len(labels)} samples; choose a fraction between them")
    return np.setdiff1d(np.arange(len(labels)), val), val


def kfold_indices(labels: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified K-fold split into folds of equal size (so the fold axis can be vmapped).

    Returns (train, val) index arrays of shape (K, (K-1)*n) and (K, n), n = len(labels) // K; up to K-1
    samples that do not fill a fold are left out of every fold.
    """
    counts = np.bincount(labels, minlength=NUM_CLASSES)
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
