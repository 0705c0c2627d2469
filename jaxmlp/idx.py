"""Read, validate and write IDX files (the format of MNIST and Fashion-MNIST).

numpy reads IDX directly in a few lines and no maintained library adds validation, so this is
hand-written: every malformed file becomes a `UsageError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from jaxmlp.errors import UsageError

# IDX type codes (third byte of the magic number) -> numpy dtype, big-endian as the format says.
_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
           0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}; check the file and its permissions") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise UsageError(f"{path} is a corrupt or truncated gzip file ({e}); delete it and fetch it again") from None


def _header(path: Path, data: bytes) -> tuple[np.dtype, int]:
    """The element type and dimension count the first bytes of an IDX file declare, validated."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise UsageError(f"{path} is not an IDX file (bad magic number {data[:4].hex() or 'empty'}); "
                         "use the original MNIST-format files")
    if data[3] == 0:
        raise UsageError(f"{path} is not an IDX file (its header declares 0 dimensions); "
                         "use the original MNIST-format files")
    return _DTYPES[data[2]], data[3]


def _shape(path: Path, data: bytes, ndim: int) -> tuple[int, ...]:
    if len(data) < 4 + 4 * ndim:
        raise UsageError(f"{path} is truncated inside its header; fetch it again")
    return tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))


def read_idx_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """The element type and shape an IDX file (raw or gzip-compressed) declares, reading only its header."""
    path = Path(path)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        head = f.read(4)
        dtype, ndim = _header(path, head)
        head += f.read(4 * ndim)
    return dtype, _shape(path, head, ndim)


def read_idx(path: str | os.PathLike, expect_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed) into a numpy array, validating its header and size."""
    path = Path(path)
    data = _read_bytes(path)
    dtype, ndim = _header(path, data)
    if expect_ndim is not None and ndim != expect_ndim:
        raise UsageError(f"{path} has {ndim} dimensions where {expect_ndim} were expected; "
                         "is it the images file in place of the labels file (or the reverse)?")
    shape = _shape(path, data, ndim)
    header = 4 + 4 * ndim
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: a corrupt header cannot overflow
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise UsageError(f"{path} is {what}: header says shape {shape} ({expected} bytes) but it has "
                         f"{len(data)} bytes; fetch it again")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write a uint8/int8 array as an IDX file; gzip it when `compress` (default: name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype not in _CODES:
        raise ValueError(f"write_idx supports uint8 and int8, not {array.dtype}")
    header = bytes([0, 0, _CODES[array.dtype], array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + np.ascontiguousarray(array).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=1)
    path.write_bytes(payload)
    return path
