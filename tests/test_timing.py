"""The timing file and time/* curves of a run whose validation is skipped in some epochs and limited in others."""

import shutil

import pytest
import torch

from tests.helpers.commands import TINY, run_entry
from tests.helpers.csv_rows import read_rows
from tests.helpers.tensorboard_events import image_tags, read_scalars

TRAIN_SAMPLES = 500  # 600 training images minus the 100 carved out for validation


@pytest.fixture(scope="module")
def run_dir(mnist_dir, tmp_path_factory):
    """3 epochs, validating only after the second, on one batch of 40 images."""
    out = tmp_path_factory.mktemp("timing_run")
    run_entry(
        "train.py",
        *TINY,
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={out}",
        "trainer.max_epochs=3",
        "trainer.check_val_every_n_epoch=2",
        "+trainer.limit_val_batches=1",
        "data.eval_batch_size=40",
        "test=false",
    )
    return out


def read_timing(run_dir) -> list[dict[str, str]]:
    return read_rows(run_dir / "timing.csv")


def test_one_row_per_epoch_and_a_summary(run_dir):
    rows = read_timing(run_dir)
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "all"]
    epochs, summary = rows[:-1], rows[-1]
    for row in epochs:
        assert int(row["samples"]) == TRAIN_SAMPLES
        assert float(row["train_s"]) > 0 and float(row["samples_per_s"]) > 0
        assert float(row["samples_per_s"]) == pytest.approx(TRAIN_SAMPLES / float(row["train_s"]), rel=1e-4)
        assert 0 < float(row["data_wait_frac"]) < 1
        assert float(row["peak_memory_mb"]) > 0
    assert int(summary["samples"]) == 3 * TRAIN_SAMPLES
    assert float(summary["train_s"]) == pytest.approx(sum(float(row["train_s"]) for row in epochs), rel=1e-4)
    assert float(summary["samples_per_s"]) == pytest.approx(3 * TRAIN_SAMPLES / float(summary["train_s"]), rel=1e-4)


def test_validation_time_only_where_validation_ran(run_dir):
    rows = read_timing(run_dir)
    assert [row["val_s"] != "" for row in rows] == [False, True, False, True]
    assert float(rows[1]["val_s"]) > 0 and rows[3]["val_s"] == rows[1]["val_s"]


def test_timing_curves_in_tensorboard(run_dir):
    scalars = read_scalars(run_dir / "tensorboard")
    for name in ("train_s", "samples_per_s", "data_wait_frac", "peak_memory_mb"):
        assert len(scalars[f"time/{name}"]) == 3, name
    assert len(scalars["time/val_s"]) == 1
    assert all(value > 0 for _, value in scalars["time/samples_per_s"])


def test_limited_validation_writes_the_samples_it_saw(run_dir):
    assert sorted(path.name for path in (run_dir / "predictions").glob("*.csv")) == ["val-epoch001.csv"]
    assert len(read_rows(run_dir / "predictions" / "val-epoch001.csv")) == 40
    assert image_tags(run_dir / "tensorboard")["val/confusion_matrix"] == 1


def test_a_run_resumed_into_its_directory_keeps_every_epoch_once(run_dir, mnist_dir, tmp_path):
    resumed = tmp_path / "run"
    shutil.copytree(run_dir, resumed)
    # the epochs up to the checkpoint's are kept as they were; the later ones are trained (again) and measured
    kept = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] + 1
    before = read_timing(resumed)[:kept]
    run_entry(
        "train.py",
        *TINY,
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={resumed}",
        "trainer.max_epochs=4",
        "test=false",
        f"ckpt_path={resumed / 'checkpoints' / 'last.ckpt'}",
    )
    rows = read_timing(resumed)
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3", "all"]
    assert rows[:kept] == before
    assert int(rows[-1]["samples"]) == 4 * TRAIN_SAMPLES
