"""IDX reading and writing: round trips, and one exact error for each way a file can be broken."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from conftest import write_dataset
from jaxmlp import data
from jaxmlp.errors import UsageError
from jaxmlp.idx import read_idx, write_idx


def _header(code: int, shape: tuple[int, ...]) -> bytes:
    """An IDX header written by hand (not by write_idx), so the tests check the format, not the writer."""
    return bytes([0, 0, code, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)


# ---- round trips -------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("shape", [(5, 28, 28), (7,), (2, 3, 4, 5)])
def test_round_trip(tmp_path: Path, suffix: str, dtype: type, shape: tuple[int, ...]) -> None:
    info = np.iinfo(dtype)
    array = np.random.default_rng(0).integers(info.min, info.max + 1, size=shape).astype(dtype)
    path = write_idx(tmp_path / f"a{suffix}", array)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")  # compressed exactly when the name says so
    back = read_idx(path)
    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable  # a copy, not a view of the read-only file buffer


def test_reads_hand_written_file_and_its_byte_layout(tmp_path: Path) -> None:
    # row-major, header big-endian: the format's definition, independent of write_idx
    path = tmp_path / "x"
    path.write_bytes(_header(0x08, (2, 3)) + bytes([1, 2, 3, 4, 5, 6]))
    np.testing.assert_array_equal(read_idx(path), [[1, 2, 3], [4, 5, 6]])
    write_idx(tmp_path / "y", np.array([[1, 2, 3], [4, 5, 6]], np.uint8))
    assert (tmp_path / "y").read_bytes() == path.read_bytes()


def test_reads_big_endian_wider_types(tmp_path: Path) -> None:
    path = tmp_path / "i4"
    path.write_bytes(_header(0x0C, (2,)) + (1).to_bytes(4, "big") + (-2).to_bytes(4, "big", signed=True))
    back = read_idx(path)
    np.testing.assert_array_equal(back, [1, -2])
    assert back.dtype.isnative


def test_write_rejects_other_dtypes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8 and int8, not float32"):
        write_idx(tmp_path / "f", np.zeros(3, np.float32))


# ---- corrupt files -----------------------------------------------------------------------------------

def _good_labels(tmp_path: Path) -> bytes:
    return _header(0x08, (4,)) + bytes([0, 1, 2, 3])


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"PK\x03\x04" + bytes(20))  # e.g. a zip file under an IDX name
    with pytest.raises(UsageError, match=r"bad is not an IDX file \(bad magic number 504b0304\)"):
        read_idx(path)


def test_unknown_type_code_is_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "code"
    path.write_bytes(_header(0x07, (1,)) + b"\x00")
    with pytest.raises(UsageError, match="bad magic number 00000701"):
        read_idx(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(UsageError, match=r"bad magic number empty"):
        read_idx(path)


def test_zero_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "zero"
    path.write_bytes(_header(0x08, ()))
    with pytest.raises(UsageError, match="declares 0 dimensions"):
        read_idx(path)


def test_wrong_ndim_labels_where_images_expected(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(_good_labels(tmp_path))
    with pytest.raises(UsageError, match="has 1 dimensions where 3 were expected; is it the images file in "
                                         r"place of the labels file \(or the reverse\)\?"):
        read_idx(path, expect_ndim=3)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "hdr"
    path.write_bytes(_header(0x08, (10, 28, 28))[:9])  # magic + one and a half sizes
    with pytest.raises(UsageError, match="hdr is truncated inside its header; fetch it again"):
        read_idx(path)


def test_truncated_body(tmp_path: Path) -> None:
    path = tmp_path / "body"
    path.write_bytes(_header(0x08, (10, 28, 28)) + bytes(28 * 28 * 10 - 1))
    expected = 16 + 7840
    with pytest.raises(UsageError, match=rf"body is truncated: header says shape \(10, 28, 28\) "
                                         rf"\({expected} bytes\) but it has {expected - 1} bytes"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(_good_labels(tmp_path) + b"\x00\x00")
    with pytest.raises(UsageError, match=r"long is longer than its header says: header says shape \(4,\) "
                                         r"\(12 bytes\) but it has 14 bytes"):
        read_idx(path)


def test_huge_sizes_in_header_do_not_overflow(tmp_path: Path) -> None:
    # 0xFFFFFFFF**3 wraps around in int64 arithmetic; the size check must still call it truncated
    path = tmp_path / "huge"
    path.write_bytes(_header(0x08, (0xFFFFFFFF,) * 3) + bytes(10))
    with pytest.raises(UsageError, match="huge is truncated"):
        read_idx(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    whole = gzip.compress(_header(0x08, (100, 28, 28)) + bytes(range(256)) * 306 + bytes(16))
    path = tmp_path / "cut.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UsageError, match=r"cut.gz is a corrupt or truncated gzip file \(.*\); "
                                         "delete it and fetch it again"):
        read_idx(path)


def test_corrupt_gzip_body(tmp_path: Path) -> None:
    whole = bytearray(gzip.compress(_good_labels(tmp_path)))
    whole[-8] ^= 0xFF  # flip the stored CRC
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(whole))
    with pytest.raises(UsageError, match="crc.gz is a corrupt or truncated gzip file"):
        read_idx(path)


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read .*missing: No such file or directory"):
        read_idx(tmp_path / "missing")


# ---- a folder of four files that do not fit together -------------------------------------------------

def test_count_mismatch_in_folder(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d", n_train=30, n_test=20)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(29, np.uint8))
    with pytest.raises(UsageError, match=r"d: train has 30 images but 29 labels; the files do not belong "
                                         "together"):
        data.load("mnist", data_dir=folder)


@pytest.mark.parametrize("bad", [10, 255])
def test_labels_out_of_range(tmp_path: Path, bad: int) -> None:
    folder = write_dataset(tmp_path / "d", n_train=30, n_test=20)
    labels = np.arange(20, dtype=np.uint8) % 10
    labels[7] = bad
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(UsageError, match=r"d: test labels must lie in 0\.\.9"):
        data.load("mnist", data_dir=folder)


def test_negative_int8_labels(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d", n_train=30, n_test=20)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(30, -1, np.int8))
    with pytest.raises(UsageError, match=r"train labels must lie in 0\.\.9"):
        data.load("mnist", data_dir=folder)


def test_images_of_wrong_size_in_folder(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d", n_train=30, n_test=20)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((20, 32, 32), np.uint8))
    with pytest.raises(UsageError, match=r"test images are uint8 \(32, 32\), expected uint8 28x28"):
        data.load("mnist", data_dir=folder)


def test_swapped_files_in_folder(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "d", n_train=30, n_test=20)
    images, labels = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    images_bytes = images.read_bytes()
    images.write_bytes(labels.read_bytes())
    labels.write_bytes(images_bytes)
    with pytest.raises(UsageError, match="train-images-idx3-ubyte.gz has 1 dimensions where 3 were expected"):
        data.load("mnist", data_dir=folder)
