"""A dataset in memory: inputs of any shape, integer labels, a class count, and where it came from."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxmlp.errors import UsageError


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and test splits: inputs (N, ...) as uint8 (scaled to [0, 1] on the device) or float, and
    int32 labels (N,) in 0..num_classes-1."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    num_classes: int = 0       # 0: one more than the largest label

    def __post_init__(self) -> None:
        if not self.num_classes:
            top = max(int(self.train_labels.max(initial=-1)), int(self.test_labels.max(initial=-1)))
            object.__setattr__(self, "num_classes", top + 1)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_images.shape[1:])

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 over the four arrays (shapes, dtypes and bytes): the dataset's identity in run records
        and checkpoints. Computed once (~0.1 s for Fashion-MNIST)."""
        h = hashlib.sha256()
        for a in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.data)
        return h.hexdigest()


def arrays(x_train: Any, y_train: Any, x_test: Any, y_test: Any, name: str = "arrays",
           num_classes: int | None = None) -> Dataset:
    """A dataset from arrays the user holds (numpy or JAX): inputs of any shape (uint8 images are scaled
    to [0, 1]; floats are used as they are), integer labels. Checked here, one line per problem."""
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim < 2:
            raise UsageError(f"{name}: x_{split} has shape {x.shape}; give one row per sample, (N, features...)")
        if y.ndim != 1 or len(y) != len(x):
            raise UsageError(f"{name}: x_{split} has {len(x)} samples but y_{split} has shape {y.shape}; "
                             "give one integer label per sample")
        if len(x) == 0:
            raise UsageError(f"{name}: the {split} split is empty")
        if not (np.issubdtype(x.dtype, np.floating) or x.dtype == np.uint8 or np.issubdtype(x.dtype, np.integer)):
            raise UsageError(f"{name}: x_{split} has dtype {x.dtype}; give uint8 images or float inputs")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise UsageError(f"{name}: x_{split} holds NaN or infinite values; clean the data first")
        if not np.issubdtype(y.dtype, np.integer):
            if not (np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all()):
                raise UsageError(f"{name}: y_{split} must hold integer class labels, got {y.dtype}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UsageError(f"{name}: x_train samples are {x_train.shape[1:]} but x_test samples are "
                         f"{x_test.shape[1:]}; both splits need one input shape")
    if x_train.dtype != np.uint8:
        x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    top = int(max(y_train.max(), y_test.max()))
    classes = num_classes if num_classes is not None else top + 1
    if min(y_train.min(), y_test.min()) < 0 or top >= classes:
        raise UsageError(f"{name}: labels must lie in 0..{classes - 1}, found {int(min(y_train.min(), y_test.min()))}"
                         f"..{top}")
    if classes < 2:
        raise UsageError(f"{name}: a classifier needs at least 2 classes, the labels hold {classes}")
    return Dataset(name, x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32),
                   source=f"arrays ({name})", num_classes=classes)


def preprocess(images: np.ndarray, flatten: bool = True) -> np.ndarray:
    """uint8 images (N, H, W) -> float32 in [0, 1], shaped (N, H·W) for MLPs or (N, H, W, 1) for CNNs."""
    x = images.astype(np.float32) / np.float32(255.0)
    return x.reshape(len(x), -1) if flatten else x.reshape(*x.shape[:3], 1)
