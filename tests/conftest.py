"""Shared fixtures: small synthetic IDX datasets written by the tests themselves (no downloads)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from synthetic import make_images, write_dataset  # noqa: F401  (the tests import them from here)

# Tests never reach the network or a system copy unless they ask for it.
os.environ.pop("JAXMLP_DATA_DIR", None)
# Compiled programs are kept for this session only (the subprocess tests reuse them; nothing in ~/.cache).
os.environ["JAXMLP_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="jaxmlp-test-xla-")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A folder with a small synthetic dataset (600 train, 200 test) in IDX .gz files."""
    return write_dataset(tmp_path_factory.mktemp("synthetic"))


REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_real_data = pytest.mark.skipif(not (REAL_FASHION / "train-images-idx3-ubyte.gz").exists(),
                                     reason="real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
