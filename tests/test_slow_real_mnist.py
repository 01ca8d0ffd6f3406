"""Real accuracy on the real MNIST (the copy shipped in datamodules/mnist_idx/)."""

import json

import pytest

from tests.helpers.commands import run_entry
from tests.helpers.tensorboard_events import read_scalars

pytestmark = pytest.mark.slow


def test_lenet_reaches_98_5_percent_test_top1(tmp_path, real_mnist_dir):
    run_entry(
        "train.py",
        "experiment=mnist_lenet",
        "trainer=cpu",
        f"data.data_dir={real_mnist_dir}",
        "data.download=false",
        f"hydra.run.dir={tmp_path}",
        "callbacks.progress_bar.refresh_rate=0",
    )
    test_top1 = read_scalars(tmp_path / "tensorboard")["test/top1"][-1][1]
    assert test_top1 >= 0.985, f"LeNet test top-1 {test_top1:.4f} < 0.985"
    evaluated = tmp_path / "eval"
    run_entry(
        "eval.py",
        f"ckpt_path={tmp_path}/checkpoints/last.ckpt",
        f"data.data_dir={real_mnist_dir}",
        f"hydra.run.dir={evaluated}",
        "splits=[test]",
        "callbacks.progress_bar.refresh_rate=0",
    )
    assert json.loads((evaluated / "metrics.json").read_text())["test/top1"] >= 0.985
