"""Datasets for a sweep: a spec is arrays the user holds, a ``.npz`` file, or a named source.

- :func:`arrays` (``x_train, y_train, x_test, y_test``): any input shape, any class count, uint8 or float.
- A path ending in ``.npz`` holding those four arrays (the command line's ``--dataset file.npz``).
- A name of the IDX family (``fashion_mnist``, ``mnist``, ``kmnist``): from ``--data-dir`` /
  ``$JAXMLP_DATA_DIR``, Debian's Fashion-MNIST, then tensorflow-datasets' checksummed download of the
  upstream IDX files (no tensorflow needed; see :mod:`jaxmlp.data.idx_files`).
- ``tfds:NAME``: any other tensorflow-datasets image classification set through ``tfds.load`` (needs
  tensorflow installed, and a network or a prepared ``~/tensorflow_datasets``).

Subsets, the stratified validation split and k folds (:mod:`jaxmlp.data.splits`) work for every spec.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Union

import numpy as np

from jaxmlp.data.dataset import Dataset, arrays, preprocess
from jaxmlp.data.idx_files import DATASETS, FILES, NUM_CLASSES, read_idx_files, read_idx_folder
from jaxmlp.data import idx_files
from jaxmlp.data.splits import kfold_indices, stratified_subset, train_val_split
from jaxmlp.errors import UsageError

Spec = Union[str, Dataset]
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def describe(spec: Spec) -> str:
    """The name a spec is recorded under in results and group labels."""
    return spec.name if isinstance(spec, Dataset) else str(spec)


def check(spec: Spec) -> Spec:
    """Refuse a spec that names nothing loadable (before any work)."""
    if isinstance(spec, Dataset):
        return spec
    if not isinstance(spec, str):
        raise UsageError(f"dataset {spec!r} is neither a name nor jaxmlp.data.arrays(...); see jaxmlp.data")
    if spec.endswith(".npz"):
        if not Path(spec).is_file():
            raise UsageError(f"--dataset {spec}: no such file; give a .npz holding {', '.join(NPZ_KEYS)}")
        return spec
    if spec.startswith("tfds:"):
        return spec
    if spec not in DATASETS:
        raise UsageError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}, a file.npz, "
                         "tfds:NAME, or jaxmlp.data.arrays(...) from Python")
    return spec


def load(spec: Spec, data_dir: str | os.PathLike | None = None) -> Dataset:
    """The dataset of a spec, validated (see the module docstring for the sources of a name)."""
    check(spec)
    if isinstance(spec, Dataset):
        return spec
    if spec.endswith(".npz"):
        return read_npz(spec)
    if spec.startswith("tfds:"):
        from jaxmlp.data import tfds_source

        return tfds_source.load_with_tensorflow(spec[len("tfds:"):])
    tried: list[str] = []
    found = idx_files.local_copy(spec, data_dir, tried)
    if found is not None:
        return found
    from jaxmlp.data import tfds_source  # imported late: tensorflow-datasets is slow to import

    try:
        return tfds_source.load(spec)
    except tfds_source.Unavailable as e:
        tried.append(f"tensorflow-datasets ({e})")
    raise UsageError(f"no copy of {spec} found; tried " + "; ".join(tried))


def stand_in(spec: Spec, data_dir: str | os.PathLike | None = None) -> Dataset | None:
    """For a named dataset held in local IDX files: its labels and zero images of its shape, read in
    milliseconds (see :func:`jaxmlp.data.idx_files.stand_in`); None for other specs. A sweep of it builds
    and compiles the programs of the real dataset's sweep (they depend on shapes and labels alone)."""
    if not isinstance(spec, str) or spec.endswith(".npz") or spec.startswith("tfds:") or spec not in DATASETS:
        return None
    return idx_files.stand_in(spec, data_dir)


def read_npz(path: str | os.PathLike) -> Dataset:
    """A dataset from a ``.npz`` file holding ``x_train``, ``y_train``, ``x_test``, ``y_test``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise UsageError(f"{path} lacks {', '.join(missing)}; a dataset .npz holds {', '.join(NPZ_KEYS)}")
            got: dict[str, Any] = {k: z[k] for k in NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UsageError(f"cannot read {path} as a .npz file ({e}); write it with numpy.savez") from None
    return arrays(**got, name=Path(path).stem)


__all__ = ["Dataset", "arrays", "load", "check", "describe", "read_npz", "preprocess", "DATASETS", "FILES",
           "NUM_CLASSES", "read_idx_files", "read_idx_folder", "kfold_indices", "stratified_subset",
           "train_val_split"]
