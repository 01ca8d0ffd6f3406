"""train.py with 2 DDP processes on the CPU: one run directory, one prediction row per sample, global throughput."""

import pytest

from core.build import build_datamodule
from tests.compose import compose_config
from tests.conftest import TINY, run_entry
from tests.csv_rows import read_rows
from tests.tensorboard_events import read_scalars

# 101 validation images do not split evenly over 2 processes: DistributedSampler repeats one
VAL_SIZE = 101
TRAIN_SAMPLES_PER_PROCESS = 250  # ceil((600 - 101) / 2), padded alike


@pytest.fixture(scope="module")
def ddp_run(mnist_dir, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("ddp_logs")
    run_entry(
        "train.py", *TINY, f"data.data_dir={mnist_dir}", f"data.val_size={VAL_SIZE}", f"paths.log_dir={log_dir}",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "data.eval_batch_size=16",
    )
    return log_dir


def test_both_processes_write_into_one_run_directory(ddp_run):
    (run_dir,) = (ddp_run / "train" / "runs").iterdir()
    assert (run_dir / "timing.csv").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_one_prediction_row_per_sample(ddp_run, mnist_dir, tmp_path):
    (run_dir,) = (ddp_run / "train" / "runs").iterdir()
    datamodule = build_datamodule(compose_config([f"data.data_dir={mnist_dir}", f"data.val_size={VAL_SIZE}"], tmp_path))
    datamodule.setup("fit")
    for epoch in (0, 1):
        rows = read_rows(run_dir / "predictions" / f"val-epoch{epoch:03d}.csv")
        assert [int(row["index"]) for row in rows] == sorted(datamodule.val_set.source_index.tolist())
    (test_file,) = (run_dir / "predictions").glob("test-epoch*.csv")
    assert [int(row["index"]) for row in read_rows(test_file)] == list(range(len(datamodule.test_set)))


def test_throughput_counts_the_samples_of_both_processes(ddp_run):
    (run_dir,) = (ddp_run / "train" / "runs").iterdir()
    rows = read_rows(run_dir / "timing.csv")
    assert [row["epoch"] for row in rows] == ["0", "1", "all"]
    assert all(int(row["samples"]) == 2 * TRAIN_SAMPLES_PER_PROCESS for row in rows[:2])
    assert all(float(row["samples_per_s"]) > 0 for row in rows)
    assert len(read_scalars(run_dir / "tensorboard")["time/samples_per_s"]) == 2
