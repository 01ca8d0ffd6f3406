"""train.py with 2 DDP processes on the CPU: one run directory, one prediction row per sample, global throughput;
DDP inside a multirun; the same metrics as 1 process with the same global batch."""

import json

import pytest
import torch

from runs.build import build_datamodule
from tests.helpers.commands import TINY, run_entry
from tests.helpers.compose import compose_config
from tests.helpers.csv_rows import read_rows
from tests.helpers.tensorboard_events import read_scalars

# 101 validation images do not split evenly over 2 processes: DistributedSampler repeats one
VAL_SIZE = 101
TRAIN_SAMPLES_PER_PROCESS = 250  # ceil((600 - 101) / 2), padded alike


@pytest.fixture(scope="module")
def ddp_run(mnist_dir, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("ddp_logs")
    run_entry(
        "train.py",
        *TINY,
        f"data.data_dir={mnist_dir}",
        f"data.val_size={VAL_SIZE}",
        f"paths.log_dir={log_dir}",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "data.eval_batch_size=16",
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


# Parity: the same seed and global batch (32) with 1 process and with 2 DDP processes of 16 each. 500 training
# and 100 validation images split evenly, so DistributedSampler adds no copies; the global batches hold the same
# samples (the shuffled order is dealt out to the processes), and DDP's averaged gradient is the 32-sample mean.
# The 2-process run is a one-job multirun, which runs DDP as ddp_spawn (runs/build.py).
PARITY = [
    *(override for override in TINY if not override.startswith(("trainer=", "data.batch_size="))),
    "model=mlp",
    "data.eval_batch_size=25",
    "test=false",
]


@pytest.fixture(scope="module")
def parity_runs(mnist_dir, tmp_path_factory):
    single_logs, ddp_logs = tmp_path_factory.mktemp("single_logs"), tmp_path_factory.mktemp("ddp_multirun_logs")
    run_entry(
        "train.py",
        *PARITY,
        "trainer=cpu",
        "data.batch_size=32",
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={single_logs}",
    )
    run_entry(
        "train.py",
        "-m",
        *PARITY,
        "trainer=ddp_cpu",
        "data.batch_size=16",
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={ddp_logs}",
    )
    (single,) = (single_logs / "train" / "runs").iterdir()
    (sweep,) = (ddp_logs / "train" / "multiruns").iterdir()
    return single, sweep, ddp_logs


@pytest.mark.slow
def test_ddp_in_a_multirun_writes_one_job_directory(parity_runs):
    _, sweep, ddp_logs = parity_runs
    assert [path.name for path in (ddp_logs / "train").iterdir()] == [
        "multiruns"
    ]  # no process started a run of its own
    assert sorted(path.name for path in sweep.iterdir() if path.is_dir()) == ["0"]
    status = json.loads((sweep / "0" / "status.json").read_text())
    assert status["status"] == "completed"
    # the best score came back from the spawned processes through the best checkpoint
    assert status["result"] == pytest.approx(
        max(value for _, value in read_scalars(sweep / "0" / "tensorboard")["val/top1"])
    )
    assert [row["status"] for row in read_rows(sweep / "summary.csv")] == ["completed"]


@pytest.mark.slow
def test_one_and_two_processes_train_the_same_weights_and_validation_metrics(parity_runs):
    single, sweep, _ = parity_runs
    one, two = read_scalars(single / "tensorboard"), read_scalars(sweep / "0" / "tensorboard")
    for tag in ("val/loss", "train/loss", "val/top1", "val/top5"):  # only the order of float sums differs
        assert [step for step, _ in one[tag]] == [step for step, _ in two[tag]] and len(one[tag]) == 2
        assert [value for _, value in two[tag]] == pytest.approx([value for _, value in one[tag]], rel=1e-4)
    assert one["val/loss"][-1][1] < one["val/loss"][0][1]  # it did train
    weights = [
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for run in (single, sweep / "0")
    ]
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_one_and_two_processes_predict_every_validation_sample_once_alike(parity_runs, mnist_dir, tmp_path):
    single, sweep, _ = parity_runs
    datamodule = build_datamodule(compose_config([f"data.data_dir={mnist_dir}", "data.val_size=100"], tmp_path))
    datamodule.setup("fit")
    expected = sorted(datamodule.val_set.source_index.tolist())
    for epoch in (0, 1):
        one = read_rows(single / "predictions" / f"val-epoch{epoch:03d}.csv")
        two = read_rows(sweep / "0" / "predictions" / f"val-epoch{epoch:03d}.csv")
        assert [int(row["index"]) for row in one] == [int(row["index"]) for row in two] == expected
        assert [float(row["loss"]) for row in two] == pytest.approx([float(row["loss"]) for row in one], rel=1e-3)
        assert [row["pred1"] for row in two] == [row["pred1"] for row in one]
