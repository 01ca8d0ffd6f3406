"""lr_find=true and batch_size_find=true: Lightning's Tuner before fitting (runs/tuning.py), through train.py."""

import json

import pytest
import torch

from tests.helpers.commands import TINY, run_entry
from tests.helpers.tensorboard_events import read_scalars

ONE_EPOCH = [
    *(override for override in TINY if not override.startswith("trainer.max_epochs=")),
    "trainer.max_epochs=1",
    "test=false",
]
FINDER = ["lr_find=true", "lr_finder.num_training=30", "lr_finder.min_lr=1e-5"]


def stored_lrs(run_dir):
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return (
        checkpoint["hyper_parameters"]["optimizer"]["lr"],
        checkpoint["run_config"]["optimizer"]["lr"],
        checkpoint["hyper_parameters"]["scheduler"],
    )


def test_the_run_trains_with_the_suggestion_and_its_schedule_spans_the_real_run(mnist_dir, tmp_path):
    run_entry(
        "train.py", *ONE_EPOCH, *FINDER, "scheduler=onecycle", f"data.data_dir={mnist_dir}", f"hydra.run.dir={tmp_path}"
    )
    record = json.loads((tmp_path / "lr_find.json").read_text())
    suggestion = record["suggested_lr"]
    assert (
        record["num_steps"] == 30
        and record["min_lr_tried"] == pytest.approx(1e-5)
        and 1e-5 <= suggestion <= record["max_lr_tried"] <= 1.0
    )
    assert record["used_lr"] == suggestion and not record["lr_given_on_command_line"]
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000
    module_lr, config_lr, scheduler = stored_lrs(tmp_path)
    assert (
        module_lr == config_lr == suggestion and scheduler["scheduler"]["max_lr"] == suggestion
    )  # OneCycle's peak follows
    # OneCycle's total_steps is the real run's (16 steps), not the finder's 30: its peak is reached and it anneals to ~0
    lrs = [value for _, value in read_scalars(tmp_path / "tensorboard")["train/lr"]]
    assert max(lrs) == pytest.approx(suggestion, rel=0.05) and lrs[-1] < 0.05 * suggestion
    assert "Learning-rate finder suggests" in (tmp_path / "train.log").read_text()
    steps = read_scalars(tmp_path / "tensorboard")["train_step/loss"]
    assert steps[0][0] == 4 and len(steps) == 3  # the finder's steps are not in the run's logs (16 steps, every 5th)


@pytest.mark.slow
def test_an_lr_given_on_the_command_line_is_kept(mnist_dir, tmp_path):
    run_entry(
        "train.py",
        *ONE_EPOCH,
        *FINDER,
        "optimizer=adam",
        "optimizer.lr=0.002",
        "scheduler=none",
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}",
    )
    record = json.loads((tmp_path / "lr_find.json").read_text())
    assert record["used_lr"] == 0.002 and record["lr_given_on_command_line"] and record["suggested_lr"] != 0.002
    assert stored_lrs(tmp_path)[:2] == (0.002, 0.002)
    assert read_scalars(tmp_path / "tensorboard")["train/lr"][0][1] == pytest.approx(0.002, rel=0.01)
    refused = run_entry(
        "train.py",
        *ONE_EPOCH,
        *FINDER,
        f"ckpt_path={tmp_path}/checkpoints/last.ckpt",
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}/continued",
        check=False,
    )
    assert refused.returncode == 2 and "lr_find=true chooses the starting learning rate of a new run" in refused.stderr


@pytest.mark.slow
def test_every_job_of_a_multirun_finds_its_own_lr(mnist_dir, tmp_path):
    run_entry(
        "train.py",
        "-m",
        "optimizer=sgd,adagrad",
        "scheduler=step",
        *ONE_EPOCH,
        *FINDER,
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={tmp_path}",
    )
    (sweep_dir,) = (tmp_path / "train" / "multiruns").iterdir()
    for job in ("0", "1"):
        record = json.loads((sweep_dir / job / "lr_find.json").read_text())
        assert stored_lrs(sweep_dir / job)[0] == record["suggested_lr"] == record["used_lr"]
        assert (sweep_dir / job / "lr_find.png").is_file()


def test_the_batch_size_finder_doubles_the_batch_and_the_run_and_the_lr_finder_use_what_it_found(mnist_dir, tmp_path):
    run_entry(
        "train.py",
        *ONE_EPOCH,
        *FINDER,
        "data.batch_size=16",
        "batch_size_find=true",
        "batch_size_finder.max_trials=2",  # on the CPU nothing runs out of memory: the trials alone end the search
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}",
    )
    record = json.loads((tmp_path / "batch_size_find.json").read_text())
    assert record["batch_size"] == 32 and record["started_from"] == 16 and record["device"] == "cpu"
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["run_config"]["data"]["batch_size"] == 32  # what the run trained with, as its config says
    assert json.loads((tmp_path / "lr_find.json").read_text())["batch_size"] == 32  # the LR suits the batch found
    log = (tmp_path / "train.log").read_text()
    assert "Batch: 32 per process" in log and "nothing runs out of memory there" in log
    steps = read_scalars(tmp_path / "tensorboard")["train_step/loss"]
    # 500 training images / 32 = 16 steps, every 5th logged: the finders' steps are not among them
    assert [step for step, _ in steps] == [4, 9, 14]


@pytest.mark.parametrize("setting", [pytest.param("batch_size_find", marks=pytest.mark.slow), "lr_find"])
def test_a_finder_on_several_processes_is_refused_in_one_sentence(setting, mnist_dir, tmp_path):
    result = run_entry(
        "train.py", *ONE_EPOCH, f"{setting}=true", "trainer.devices=2", f"data.data_dir={mnist_dir}", check=False
    )
    assert result.returncode == 2 and f"{setting}=true runs in one process" in result.stderr
