"""TensorBoard views that compare (runs/build.py, conf/logger/tensorboard.yaml): train and val on one Custom
Scalars chart, a short hparams row written when a run starts (so a failed run shows), multirun jobs named by their overrides."""

import re

import pytest

from runs.build import HPARAM_KEYS
from tests.helpers.commands import TINY, run_entry
from tests.helpers.tensorboard_events import custom_scalar_charts, hparams, read_scalars

ONE_EPOCH = [
    *(override for override in TINY if not override.startswith("trainer.max_epochs=")),
    "trainer.max_epochs=1",
    "test=false",
]


@pytest.fixture(scope="module")
def sweep(mnist_dir, tmp_path_factory):
    """optimizer.lr=0.05 trains, optimizer.lr=1e9 diverges (callbacks/checkpointing.py fails the job)."""
    log_dir = tmp_path_factory.mktemp("logs")
    run_entry(
        "train.py",
        "-m",
        "optimizer.lr=0.05,1e9",
        *ONE_EPOCH,
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={log_dir}",
        check=False,
    )
    (sweep_dir,) = (log_dir / "train" / "multiruns").iterdir()
    return sweep_dir


def test_each_job_is_a_tensorboard_run_named_by_its_overrides(sweep):
    for job, lr in (("0", "0.05"), ("1", "1000000000.0")):
        (run,) = [path.parent for path in (sweep / job / "tensorboard").rglob("events.out.tfevents.*")][:1]
        assert (
            run.parent == sweep / job / "tensorboard"
            and f"optimizer.lr={lr}" in run.name
            and "trainer.max_epochs=1" in run.name
        )
        assert "data_dir" not in run.name and "/" not in run.name


def test_train_and_val_share_a_chart_per_metric(sweep):
    charts = custom_scalar_charts(sweep / "0" / "tensorboard")
    assert charts == {
        "loss": ["^train/loss$", "^val/loss$"],
        "top-1": ["^train/top1$", "^val/top1$"],
        "top-5": ["^train/top5$", "^val/top5$"],
    }
    tags = set(read_scalars(sweep / "0" / "tensorboard"))
    assert all(any(re.fullmatch(pattern, tag) for tag in tags) for lines in charts.values() for pattern in lines)


def test_the_hparams_row_is_short_and_a_failed_run_has_one_too(sweep):
    for job, lr in (("0", 0.05), ("1", 1e9)):
        values, metrics = hparams(sweep / job / "tensorboard")
        assert values["optimizer/lr"] == pytest.approx(lr) and values["model/_target_"].endswith("LeNet5")
        overridden = {
            "trainer/max_epochs",
            "data/batch_size",
            "data/val_size",
            "data/download",
            "trainer/log_every_n_steps",
            "trainer/_target_",
            "test",
        }
        assert (
            set(values) <= set(HPARAM_KEYS) | overridden | {"model/params_total", "model/params_trainable"}
            and len(values) < 25
        )
        assert "data/data_dir" not in values and {"hp/best_val_top1", "hp/val_top1", "hp/val_loss"} <= set(metrics)
    assert "hp/best_val_top1" in read_scalars(sweep / "0" / "tensorboard")  # the completed job's final values
    assert "hp/best_val_top1" not in read_scalars(sweep / "1" / "tensorboard")


def test_report_reads_the_jobs_named_folders(sweep, tmp_path):
    run_entry("report.py", str(sweep), f"out={tmp_path}")
    report = (tmp_path / "report.md").read_text()
    assert "| job | status | optimizer.lr |" in report and "| 0 | completed | 0.05 |" in report
