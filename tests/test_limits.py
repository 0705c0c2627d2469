"""Sizes and ranges are checked before any work: a member or chunk that cannot fit, seeds, epochs and
values outside what the program represents, names of sources that need what is not installed."""

from __future__ import annotations

import pytest

from jaxmlp import data
from jaxmlp.cli import main
from jaxmlp.errors import UsageError
from synthetic import write_dataset


def run(argv, tmp_path, capsys):
    code = main([*argv, "--out", str(tmp_path / "run"), "--quiet", "--no-plots"])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("argv, expected", [
    (["sweep", "--hidden", "1000000,1000000"], "none fits; use a smaller model or batch size"),
    (["sweep", "--hidden", "16", "--dropout", "0,0.5", "--chunk-size", "10000000000"], "use --chunk-size"),
    (["sweep", "--seed", "5000000000"], "--seed 5000000000 is outside 0..4294967295"),
    (["sweep", "--seed=-1"], "--seed -1 is outside 0..4294967295"),
    (["sweep", "--data-seed=-1"], "--data-seed -1 is outside"),
    (["sweep", "--epochs", "1000000000"], "--epochs must lie in 1..100000"),
    (["sweep", "--lr", "inf"], "not finite"),
    (["sweep", "--l2", "0:inf:3"], "not finite"),
    (["sweep", "--b1", "0.5", "--optimizer", "sgd"], "b1 is not read by the model, optimizer or loss"),
    (["sweep", "--dataset", "tfds:cifar10"], "tfds:cifar10 needs tensorflow"),
])
def test_refused_before_any_work_in_one_line(argv, expected, synthetic_dir, tmp_path, capsys):
    code, err = run([*argv, "--data-dir", str(synthetic_dir)], tmp_path, capsys)
    assert code == 2 and expected in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_kmnist_reads_its_idx_files_like_the_rest_of_the_family(tmp_path):
    write_dataset(tmp_path / "kmnist", 60, 20, seed=5)
    ds = data.load("kmnist", tmp_path)
    assert ds.train_images.shape == (60, 28, 28) and ds.num_classes == 10 and ds.name == "kmnist"
    with pytest.raises(UsageError, match="unknown dataset 'cifar10'"):
        data.check("cifar10")
