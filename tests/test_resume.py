"""Resuming through the real train.py: exact (bitwise) after a stop at an epoch end, mid-epoch, on signals and after SIGKILLs."""

import csv
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.commands import run_entry, start, wait_for
from tests.helpers.tensorboard_events import read_scalars_as_shown

EPOCHS = 3
# Random images (fake data) in MNIST's shape, 60 small batches per epoch: long enough to be interrupted
# mid-epoch; dropout makes the result depend on the random generators being restored.
SLOW_ENOUGH = [
    "trainer=cpu",
    "data=fake",
    "data.input_shape=[1,28,28]",
    "data.num_classes=10",
    "data.train_size=480",
    "data.val_size=64",
    "data.test_size=32",
    "data.batch_size=8",
    "model.dropout=0.3",
    f"trainer.max_epochs={EPOCHS}",
    "test=false",
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.periodic_checkpoint.every_n_epochs=1",
    "trainer.log_every_n_steps=10",
    "logger=[tensorboard,csv]",
]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training_state(expected: Path, actual: Path) -> None:
    """Weights, optimizer state, scheduler, step and epoch identical, bit for bit."""
    a, b = load(expected), load(actual)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    for state_a, state_b in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def assert_one_point_per_epoch(run: Path) -> None:
    """In TensorBoard's view and in the CSV file, each epoch's train and val metrics once."""
    scalars = read_scalars_as_shown(run / "tensorboard")
    for tag in ("train/loss", "val/loss", "val/top1"):
        steps = [step for step, _ in scalars[tag]]
        assert len(steps) == EPOCHS and len(set(steps)) == EPOCHS, (tag, steps)
    with (run / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    for column in ("train/loss", "val/top1"):
        epochs = sorted(int(float(row["epoch"])) for row in rows if row[column])
        assert epochs == list(range(EPOCHS)), (column, epochs)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    """The uninterrupted run that every interrupted one must reproduce."""
    out = tmp_path_factory.mktemp("straight")
    run_entry("train.py", *SLOW_ENOUGH, f"hydra.run.dir={out}")
    return out


def test_resuming_from_a_mid_run_checkpoint_reproduces_the_straight_run(straight_run, tmp_path):
    """Stop after 1 of 3 epochs (the straight run's epoch000.ckpt), resume in a new directory: same final state and val metrics."""
    run_entry(
        "train.py", *SLOW_ENOUGH, f"hydra.run.dir={tmp_path}", f"ckpt_path={straight_run}/checkpoints/epoch000.ckpt"
    )
    assert_same_training_state(straight_run / "checkpoints" / "last.ckpt", tmp_path / "checkpoints" / "last.ckpt")
    expected, resumed = (
        read_scalars_as_shown(straight_run / "tensorboard"),
        read_scalars_as_shown(tmp_path / "tensorboard"),
    )
    for tag in ("val/loss", "val/top1", "train/loss"):
        assert resumed[tag] == expected[tag][1:], tag  # epochs 2 and 3, same steps, same values


# SIGINT goes through the same handler: the slow suite runs it too
@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_saves_a_checkpoint_and_resume_true_continues_exactly(straight_run, tmp_path, signum):
    run = tmp_path / "run"
    overrides = [*SLOW_ENOUGH, f"hydra.run.dir={run}"]
    process = start(overrides)
    wait_for(run / "checkpoints" / "epoch000.ckpt", process)
    time.sleep(random.uniform(0.0, 0.5))  # somewhere in the second epoch
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert f"training stopped by {signal.Signals(signum).name}" in stderr and "resume=true" in stderr
    assert "Traceback" not in stderr
    stopped_at = load(run / "checkpoints" / "last.ckpt")
    assert 0 < stopped_at["global_step"] < load(straight_run / "checkpoints" / "last.ckpt")["global_step"]

    run_entry("train.py", *overrides, "resume=true")
    assert_same_training_state(straight_run / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    assert_one_point_per_epoch(run)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_true_matches_the_straight_run(straight_run, tmp_path):
    """5 SIGKILLs at random moments (before, during and between checkpoint writes), each followed by resume=true;
    every checkpoint on disk stays loadable and the finished run equals the uninterrupted one."""
    logs = tmp_path / "logs"
    overrides = [*SLOW_ENOUGH, f"paths.log_dir={logs}", "resume=true"]
    rng = random.Random(0)
    for _ in range(5):
        process = start(overrides)
        time.sleep(rng.uniform(3.0, 6.0))  # python and torch take ~3 s to start, the 3 epochs ~2 s more
        process.kill()
        process.wait()
        for checkpoint in logs.rglob("*.ckpt"):
            load(checkpoint)  # a torn file would raise here
    result = run_entry("train.py", *overrides)
    runs = [path.parent.parent for path in logs.glob("train/runs/*/checkpoints/last.ckpt")]
    finished = max(runs, key=lambda run: (run / "checkpoints" / "last.ckpt").stat().st_mtime)
    assert_same_training_state(straight_run / "checkpoints" / "last.ckpt", finished / "checkpoints" / "last.ckpt")
    assert_one_point_per_epoch(finished)
    assert "Traceback" not in result.stderr


def test_resume_true_picks_the_latest_run_of_the_same_experiment(tmp_path):
    logs = tmp_path / "logs"
    one_epoch = [override for override in SLOW_ENOUGH if not override.startswith("trainer.max_epochs=")] + [
        "trainer.max_epochs=1"
    ]
    common = [*one_epoch, f"paths.log_dir={logs}"]
    run_entry("train.py", *common)
    (first,) = (logs / "train" / "runs").iterdir()
    # another experiment (another learning rate) whose last.ckpt is newer
    other = first.with_name(first.name + "_other")
    shutil.copytree(first, other)
    config = other / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.05", "lr: 0.01"))
    os.utime(other / "checkpoints" / "last.ckpt", (time.time() + 60, time.time() + 60))
    run_entry(
        "train.py", *reversed(common), "resume=true"
    )  # the first run's settings, in another order (each key once)
    assert sorted((logs / "train" / "runs").iterdir()) == [first, other], (
        "resume=true must not start a new run directory"
    )
    # the first run has finished (one epoch): resume=true picked it, and says so
    assert f"the latest run of this experiment, {first}, has finished" in (first / "train.log").read_text()
    assert "resume=true" not in (other / "train.log").read_text()


def test_resuming_a_finished_run_says_so_and_logs_nothing_twice(tmp_path, mnist_dir):
    """resume=true of an experiment whose latest run finished (metrics.json) changes none of its records."""
    from tests.helpers.commands import TINY

    overrides = [
        *TINY,
        "trainer.max_epochs=1",
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={tmp_path}",
        "logger=[tensorboard,csv]",
    ]
    run_entry("train.py", *overrides)
    (run,) = (tmp_path / "train" / "runs").iterdir()
    records = {path: path.read_bytes() for path in [*run.rglob("events.out.tfevents.*"), *run.rglob("metrics.csv")]}
    final = (run / "metrics.json").read_text()
    again = run_entry("train.py", *overrides, "resume=true")
    assert "has finished" in again.stderr + (run / "train.log").read_text()
    assert [path for path in run.rglob("events.out.tfevents.*")] == [
        path for path in records if "tfevents" in path.name
    ]
    assert all(path.read_bytes() == content for path, content in records.items())
    assert (run / "metrics.json").read_text() == final and "test/top1" in final


def test_a_signal_after_the_last_epoch_stops_before_testing_and_resume_tests_once(tmp_path, mnist_dir):
    """SIGTERM after every epoch has ended (the last epoch-end hooks run): the run stops with its state saved instead of
    going on to test as if nothing came; resume=true then tests once and the run is finished."""
    from tests.helpers.commands import TINY

    overrides = [
        *TINY,
        "trainer.max_epochs=1",
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={tmp_path}",
        "+callbacks.kill._target_=tests.helpers.failing_callback.KillAt",
        "+callbacks.kill.moment=sigterm_after_training",
        f"+callbacks.kill.once={tmp_path / 'signalled'}",
    ]
    stopped = run_entry("train.py", *overrides, check=False)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert "training stopped by SIGTERM after the last epoch, before testing" in stopped.stderr
    (run,) = (tmp_path / "train" / "runs").iterdir()
    assert not (run / "metrics.json").exists()
    run_entry("train.py", *overrides, "resume=true")
    assert "test/top1" in (run / "metrics.json").read_text()


def test_a_checkpoint_continued_for_more_epochs_goes_on_along_a_longer_one_cycle_schedule(tmp_path):
    """docs/reliability.md: `ckpt_path=... trainer.max_epochs=<more>`; the stored total_steps would stop OneCycleLR."""
    small = [
        "trainer=cpu",
        "data=fake",
        "data.input_shape=[1,28,28]",
        "data.num_classes=10",
        "data.train_size=256",
        "data.val_size=16",
        "data.batch_size=16",
        "scheduler=onecycle",
        "test=false",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    run_entry("train.py", *small, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'first'}")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert load(last)["lr_schedulers"][0]["total_steps"] == 16  # 256 images in batches of 16
    run_entry("train.py", *small, "trainer.max_epochs=3", f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'more'}")
    (schedule,) = load(tmp_path / "more" / "checkpoints" / "last.ckpt")["lr_schedulers"]
    assert (schedule["total_steps"], schedule["last_epoch"]) == (48, 48)


def test_a_signal_during_the_sanity_check_stops_after_the_first_batch_with_a_checkpoint(tmp_path, mnist_dir):
    """SIGTERM before training starts: the run stops after its first batch with a checkpoint (exit 143), not with
    Lightning's own SIGTERM stop, which saves nothing and exits 0."""
    from tests.helpers.commands import TINY

    overrides = [*TINY, "trainer.max_epochs=1", f"data.data_dir={mnist_dir}", f"paths.log_dir={tmp_path}"]
    overrides += ["+callbacks.kill._target_=tests.helpers.failing_callback.KillAt"]
    overrides += ["+callbacks.kill.moment=sigterm_in_sanity_check", f"+callbacks.kill.once={tmp_path / 'signalled'}"]
    stopped = run_entry("train.py", *overrides, check=False)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert "training stopped by SIGTERM after batch 1 of epoch 0" in stopped.stderr
    (run,) = (tmp_path / "train" / "runs").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
