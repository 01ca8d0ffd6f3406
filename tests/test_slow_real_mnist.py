"""Real accuracy on the real MNIST (../shared/data); skipped where those files are absent."""

import json

import pytest

from tests.conftest import REAL_MNIST, run_entry
from tests.tensorboard_events import read_scalars

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REAL_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file(), reason=f"real MNIST not in {REAL_MNIST}"),
]


def test_lenet_reaches_98_5_percent_test_top1(tmp_path):
    run_entry("train.py", "experiment=mnist_lenet", "trainer=cpu", f"data.data_dir={REAL_MNIST}", "data.download=false", f"hydra.run.dir={tmp_path}", "callbacks.progress_bar.refresh_rate=0")
    test_top1 = read_scalars(tmp_path / "tensorboard")["test/top1"][-1][1]
    assert test_top1 >= 0.985, f"LeNet test top-1 {test_top1:.4f} < 0.985"
    evaluated = tmp_path / "eval"
    run_entry("eval.py", f"ckpt_path={tmp_path}/checkpoints/last.ckpt", f"hydra.run.dir={evaluated}", "splits=[test]", "callbacks.progress_bar.refresh_rate=0")
    assert json.loads((evaluated / "metrics.json").read_text())["test/top1"] >= 0.985
