"""The IDX family of named datasets (Fashion-MNIST, MNIST, KMNIST): where their four files come from.

Sources, tried in this order for a named dataset:
1. ``data_dir`` (``--data-dir``) or ``$JAXMLP_DATA_DIR``: the four standard IDX files, ``.gz`` or raw,
   directly in that folder or in a sub-folder named after the dataset;
2. the system copy installed by Debian's ``dataset-fashion-mnist`` (Fashion-MNIST only);
3. tensorflow-datasets (see :mod:`jaxmlp.data.tfds_source`), which needs a network the first time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxmlp.errors import UsageError
from jaxmlp.data.dataset import Dataset
from jaxmlp.idx import read_idx, read_idx_header

DATASETS = ("fashion_mnist", "mnist", "kmnist")   # 28×28 uint8 images, 10 classes, IDX files
NUM_CLASSES = 10
SYSTEM_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
FILES = {  # split -> (images file, labels file), without the optional .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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
        _check_split(source, split, images.dtype, images.shape, labels)
        arrays[split] = (images, labels)
    return Dataset(name, *arrays["train"], *arrays["test"], source=source, num_classes=NUM_CLASSES)


def _check_split(source: str, split: str, dtype: np.dtype, shape: tuple[int, ...], labels: np.ndarray) -> None:
    """Refuse one split whose images (their type and shape) and labels do not make a dataset of the family."""
    if shape[0] != labels.shape[0]:
        raise UsageError(f"{source}: {split} has {shape[0]} images but {labels.shape[0]} labels; "
                         "the files do not belong together")
    if dtype != np.uint8 or shape[1:] != (28, 28):
        raise UsageError(f"{source}: {split} images are {dtype} {shape[1:]}, expected uint8 28x28")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UsageError(f"{source}: {split} labels must lie in 0..{NUM_CLASSES - 1}")


def read_idx_folder(folder: Path, name: str) -> Dataset:
    """Read and validate the four IDX files (.gz or raw) of one dataset from a folder."""
    paths = {stem: _find_file(folder, stem) for pair in FILES.values() for stem in pair}
    return read_idx_files(name, paths, str(folder))


def local_copy(name: str, data_dir: str | os.PathLike | None, tried: list[str]) -> Dataset | None:
    """The dataset from the first local source that has it (sources 1 and 2 of the module docstring), or
    None, with what was tried appended to `tried`."""
    folder = _local_folder(name, data_dir, tried)
    return None if folder is None else read_idx_folder(folder, name)


def _local_folder(name: str, data_dir: str | os.PathLike | None, tried: list[str]) -> Path | None:
    check_name(name)
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
        return folder
    tried.append("--data-dir / JAXMLP_DATA_DIR (not set)")
    system = SYSTEM_DIRS.get(name)
    if system is None:
        tried.append(f"system copy (Debian packages only Fashion-MNIST, not {name})")
        return None
    found = _idx_folder(system, name)
    if found is None:
        tried.append(f"Debian's dataset-fashion-mnist at {system} (not installed: apt-get install "
                     "dataset-fashion-mnist)")
    return found


def stand_in(name: str, data_dir: str | os.PathLike | None) -> Dataset | None:
    """The local copy's labels, with zero images of its images' shape (read from their headers without
    unzipping them): what preparing a sweep needs to trace and compile its programs while the images are
    still being read. None when there is no local copy or it looks wrong (loading it says why)."""
    try:
        folder = _local_folder(name, data_dir, [])
        if folder is None:
            return None
        arrays = {}
        for split, (images_stem, labels_stem) in FILES.items():
            labels = read_idx(_find_file(folder, labels_stem), expect_ndim=1).astype(np.int32)
            dtype, shape = read_idx_header(_find_file(folder, images_stem))
            _check_split(str(folder), split, dtype, shape, labels)
            arrays[split] = (np.zeros(shape, np.uint8), labels)
    except (UsageError, OSError, EOFError):
        return None
    return Dataset(name, *arrays["train"], *arrays["test"], source=str(folder), num_classes=NUM_CLASSES)
