"""The benchmarks' data: real Fashion-MNIST where Debian's package is installed, else synthetic data of
its shape (60,000 / 10,000 images) written by the tests' generator, so a benchmark runs anywhere."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REAL = Path("/usr/share/datasets/fashion-mnist")


def fashion_or_synthetic(synthetic: bool = False) -> str:
    """The data_dir to pass to SweepConfig."""
    if not synthetic and (REAL / "train-images-idx3-ubyte.gz").exists():
        return str(REAL)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from synthetic import write_dataset

    folder = Path(tempfile.mkdtemp()) / "synthetic"
    write_dataset(folder, 60000, 10000)
    print(f"(synthetic data of Fashion-MNIST's shape in {folder})")
    return str(folder)
