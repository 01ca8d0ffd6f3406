"""Records that survive kills and a second process, through the real train.py.

- A SIGKILL right after last.ckpt is written (before Lightning logs that epoch's train/* means), or in the
  test phase: the resumed run (resume=true) ends with every epoch's train and val rows in metrics.csv and
  TensorBoard, each once, with the values of an uninterrupted run; no temporary file of an interrupted write is left.
- A second process (resume=true) into a run directory that a live run trains in stops with one sentence
  naming that process, exit code 2, and changes nothing there; the lock vanishes with the process.
"""

import csv
import os
import signal
from pathlib import Path

import pytest

from runs.entry_points import LOCK_FILE, lock_run_directory
from tests.helpers.commands import run_entry, start, wait_for
from tests.helpers.tensorboard_events import read_scalars, read_scalars_as_shown

EPOCHS = 3
SMALL = [
    "trainer=cpu",
    "data=fake",
    "data.input_shape=[1,28,28]",
    "data.num_classes=10",
    "data.train_size=96",
    "data.val_size=32",
    "data.test_size=32",
    "data.batch_size=8",
    "model.dropout=0.3",
    f"trainer.max_epochs={EPOCHS}",
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.periodic_checkpoint.every_n_epochs=1",
    "trainer.log_every_n_steps=5",
    "logger=[tensorboard,csv]",
]
EPOCH_TAGS = ("train/loss", "train/top1", "train/top5", "val/loss", "val/top1", "val/top5")


def epoch_rows(run: Path) -> dict[str, list[tuple[int, int, float]]]:
    """tag -> [(epoch, step, value)] of the rows of metrics.csv that hold it."""
    with (run / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    return {
        tag: [(int(float(row["epoch"])), int(row["step"]), float(row[tag])) for row in rows if row.get(tag)]
        for tag in EPOCH_TAGS
    }


def the_run(logs: Path) -> Path:
    (run,) = (logs / "train" / "runs").iterdir()
    return run


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, list[tuple[int, int, float]]]:
    logs = tmp_path_factory.mktemp("straight")
    run_entry("train.py", *SMALL, f"paths.log_dir={logs}")
    return epoch_rows(the_run(logs))


# after the last epoch (the resumed run only tests) and in the test phase: the slow suite
@pytest.mark.parametrize(
    "moment, epoch",
    [
        ("saving", 1),
        pytest.param("epoch_end", 0, marks=pytest.mark.slow),
        pytest.param("epoch_end", EPOCHS - 1, marks=pytest.mark.slow),
        pytest.param("test_start", 0, marks=pytest.mark.slow),
    ],
)
def test_a_kill_after_last_ckpt_or_in_the_test_phase_loses_no_row(straight, tmp_path, moment, epoch):
    logs = tmp_path / "logs"
    overrides = [
        *SMALL,
        f"paths.log_dir={logs}",
        "resume=true",
        "+callbacks.kill._target_=tests.helpers.failing_callback.KillAt",
        f"+callbacks.kill.moment={moment}",
        f"+callbacks.kill.epoch={epoch}",
        f"+callbacks.kill.once={tmp_path / 'killed'}",
    ]
    killed = run_entry("train.py", *overrides, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = the_run(logs)
    # what a write killed before its rename leaves; removed when the run resumes in its directory
    stale = run / "checkpoints" / ".epoch000.ckpt.k1ll3d_x.tmp"
    stale.write_bytes(b"half a checkpoint")

    resumed = run_entry("train.py", *overrides)
    assert the_run(logs) == run and f"Resuming {run}" in resumed.stderr + (run / "train.log").read_text()
    rows = epoch_rows(run)
    assert rows == straight, "every epoch's rows once, with the uninterrupted run's values"
    shown = read_scalars_as_shown(run / "tensorboard")
    for tag in EPOCH_TAGS:
        assert [step for step, _ in shown[tag]] == [step for _, step, _ in straight[tag]], tag
        assert [value for _, value in shown[tag]] == pytest.approx([value for _, _, value in straight[tag]]), tag
    assert list(logs.rglob("*.tmp")) == []
    for tag in ("time/train_s", "time/samples_per_s"):  # each epoch's timing once, none hidden by the restart
        steps = [step for step, _ in shown[tag]]
        assert steps == [step for _, step, _ in straight["train/loss"]], (tag, steps)
    # the hparams tab's row ends with the final values of training and validation, as the uninterrupted run's does
    final = {tag: values[-1][1] for tag, values in read_scalars(run / "tensorboard").items() if tag.startswith("hp/")}
    for tag in ("train/top1", "val/top1", "val/loss"):
        assert final[f"hp/{tag.replace('/', '_')}"] == pytest.approx(straight[tag][-1][2]), tag


def hydra_record(run: Path) -> dict[str, bytes]:
    """What Hydra writes when a run starts: a second process would have rewritten it (with resume=true)."""
    return {name: (run / ".hydra" / name).read_bytes() for name in ("config.yaml", "overrides.yaml", "hydra.yaml")}


@pytest.mark.slow
def test_a_second_process_into_a_live_run_directory_is_refused_and_the_lock_dies_with_the_first(tmp_path):
    logs = tmp_path / "logs"
    # long enough to be alive when the second process starts: 100 epochs of 12 batches
    overrides = [
        *(override for override in SMALL if not override.startswith("trainer.max_epochs=")),
        "trainer.max_epochs=100",
        "test=false",
        f"paths.log_dir={logs}",
    ]
    first = start(overrides)
    try:
        wait_for(logs / "train" / "runs", first)
        run = the_run(logs)
        wait_for(run / "checkpoints" / "last.ckpt", first)
        before, log_before = hydra_record(run), (run / "train.log").read_bytes()

        second = run_entry("train.py", *overrides, "resume=true", check=False)
        assert second.returncode == 2, second.stderr[-3000:]
        (line,) = second.stderr.strip().splitlines()
        assert (
            line.startswith(f"error: Another process (pid {first.pid} on ")
            and f"is running in {run}:" in line
            and line.count(". ") == 0
        )
        assert first.poll() is None, "the first run goes on"
        assert hydra_record(run) == before and the_run(logs) == run
        log_after = (run / "train.log").read_bytes()  # the first run's own lines go on, none of the second's
        assert log_after.startswith(log_before) and b"Resuming" not in log_after
    finally:
        first.kill()
        first.wait()

    # killed: its lock went with it (the file stays, naming the last holder)
    assert f"pid {first.pid} on " in (run / LOCK_FILE).read_text()
    os.close(lock_run_directory(run))


def test_a_killed_sweep_continues_in_its_own_folder_with_resume_true(tmp_path):
    """The same multirun command with resume=true continues the killed sweep: its jobs, numbered as before, each
    from their own last.ckpt (or from the start, for those that had not started); no second sweep folder."""
    import json

    logs = tmp_path / "logs"
    overrides = [
        "-m",
        *SMALL,
        "optimizer.lr=0.05,0.01",
        f"paths.log_dir={logs}",
        "+callbacks.kill._target_=tests.helpers.failing_callback.KillAt",
        "+callbacks.kill.moment=epoch_end",
        "+callbacks.kill.epoch=1",
        f"+callbacks.kill.once={tmp_path / 'killed'}",
    ]
    killed = run_entry("train.py", *overrides, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    assert json.loads((sweep / "0" / "status.json").read_text())["status"] == "running"
    run_entry("train.py", *overrides, "resume=true")
    assert list((logs / "train" / "multiruns").iterdir()) == [sweep]
    assert f"Resuming {sweep / '0'}" in (sweep / "0" / "train.log").read_text()
    for job in ("0", "1"):
        assert json.loads((sweep / job / "status.json").read_text())["status"] == "completed"
    (metrics,) = (sweep / "0").rglob("metrics.csv")
    with metrics.open(newline="") as file:
        epochs = [int(float(row["epoch"])) for row in csv.DictReader(file) if row.get("val/top1")]
    assert epochs == list(range(EPOCHS)), "each epoch's validation once, the last one included"
