"""Multiruns of train.py: one directory per job under one sweep directory, how each job ended (status.json),
the sweep summary (summary.md and summary.csv, after every job and from sweep_summary.py) and the hparams rows
(Optuna searches: tests/test_search.py)."""

import importlib.util
import json
import shutil

import pytest

from runs.entry_points import quoted
from tests.helpers.commands import TINY, files_left, run_entry
from tests.helpers.compose import compose_config
from tests.helpers.csv_rows import read_rows
from tests.helpers.tensorboard_events import hparams, read_scalars

ONE_EPOCH = [
    *(override for override in TINY if not override.startswith("trainer.max_epochs=")),
    "trainer.max_epochs=1",
    "test=false",
]
DIVERGING_LR = "1e9"  # the loss is NaN after a step or two: callbacks/checkpointing.py stops the job
NAN_REASON = "The training loss became NaN or infinite at epoch 0"


@pytest.fixture(scope="module")
def sweep(mnist_dir, tmp_path_factory):
    """optimizer=sgd,adam x optimizer.lr=0.05,1e9: two jobs train, two diverge."""
    log_dir = tmp_path_factory.mktemp("sweep_logs")
    result = run_entry(
        "train.py",
        "-m",
        "optimizer=sgd,adam",
        f"optimizer.lr=0.05,{DIVERGING_LR}",
        *ONE_EPOCH,
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={log_dir}",
        check=False,
    )
    (sweep_dir,) = (log_dir / "train" / "multiruns").iterdir()
    return result, sweep_dir


def test_every_job_runs_in_its_own_directory_and_a_failure_does_not_stop_the_sweep(sweep):
    result, sweep_dir = sweep
    # every job runs; the sweep then ends with a line that counts the failed ones, and exit code 2
    assert result.returncode == 2 and NAN_REASON in result.stdout  # each failed job logs its sentence
    assert result.stderr.strip().splitlines()[-1] == f"2 of 4 jobs failed, reasons in {sweep_dir}/summary.md"
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in sweep_dir.iterdir() if path.is_dir()) == ["0", "1", "2", "3"]
    for job in ("0", "2"):
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").is_file() and (sweep_dir / job / "timing.csv").is_file()


def test_status_files_say_how_each_job_ended(sweep):
    _, sweep_dir = sweep
    statuses = {job: json.loads((sweep_dir / job / "status.json").read_text()) for job in "0123"}
    assert [statuses[job]["status"] for job in "0123"] == ["completed", "failed", "completed", "failed"]
    for job in "13":
        assert statuses[job]["reason"].startswith(NAN_REASON)
    for job in "02":  # train.py's return value: the best val top-1, as TensorBoard has it
        assert statuses[job]["result"] == pytest.approx(
            max(value for _, value in read_scalars(sweep_dir / job / "tensorboard")["val/top1"])
        )


def test_a_failed_jobs_reason_is_the_sentence_of_that_job_run_alone(sweep, mnist_dir, tmp_path):
    _, sweep_dir = sweep
    alone = run_entry(
        "train.py",
        "optimizer=sgd",
        f"optimizer.lr={DIVERGING_LR}",
        *ONE_EPOCH,
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={tmp_path}",
        check=False,
    )
    assert alone.returncode == 2
    (sentence,) = [line.removeprefix("error: ") for line in alone.stderr.splitlines() if line.startswith("error: ")]
    assert json.loads((sweep_dir / "1" / "status.json").read_text())["reason"] == sentence


@pytest.mark.slow
def test_a_job_that_fails_with_an_unexpected_exception_is_counted_with_its_type_message_and_place(mnist_dir, tmp_path):
    result = run_entry(
        "train.py",
        "-m",
        "optimizer.lr=0.05,0.01",
        *ONE_EPOCH,
        f"data.data_dir={mnist_dir}",
        f"paths.log_dir={tmp_path}",
        "+callbacks.fail._target_=tests.helpers.failing_callback.RaiseAtEpoch",
        "+callbacks.fail.epoch=0",
        check=False,
    )
    (sweep_dir,) = (tmp_path / "train" / "multiruns").iterdir()
    assert (
        result.returncode == 2
        and result.stderr.strip().splitlines()[-1] == f"2 of 2 jobs failed, reasons in {sweep_dir}/summary.md"
    )
    reason = json.loads((sweep_dir / "0" / "status.json").read_text())["reason"]
    assert (
        reason.startswith("TypeError (without a message) raised in on_train_epoch_start (")
        and "failing_callback.py" in reason
    )
    assert (
        "the job's train.log has the traceback" in reason and "Traceback" in (sweep_dir / "0" / "train.log").read_text()
    )


def test_summary_has_one_row_per_job_with_its_overrides_metrics_and_failure_reason(sweep):
    _, sweep_dir = sweep
    rows = read_rows(sweep_dir / "summary.csv")
    assert [(row["job"], row["optimizer"], float(row["optimizer.lr"]), row["status"]) for row in rows] == [
        ("0", "sgd", 0.05, "completed"),
        ("1", "sgd", 1e9, "failed"),
        ("2", "adam", 0.05, "completed"),
        ("3", "adam", 1e9, "failed"),
    ]
    for row in rows:
        scalars = read_scalars(sweep_dir / row["job"] / "tensorboard")
        if row["status"] == "completed":
            (best_step, best), *_ = sorted(scalars["val/top1"], key=lambda point: -point[1])
            assert float(row["best_val_top1"]) == pytest.approx(best)
            assert float(row["val_top5"]) == pytest.approx(dict(scalars["val/top5"])[best_step])
            assert float(row["final_val_loss"]) == pytest.approx(scalars["val/loss"][-1][1])
            assert (
                row["epochs"] == "1"
                and float(row["wall_s"]) > 0
                and float(row["samples_per_s"]) > 0
                and row["reason"] == ""
            )
        else:
            assert row["reason"].startswith(NAN_REASON) and row["best_val_top1"] == "" and "val/top1" not in scalars
    markdown = (sweep_dir / "summary.md").read_text()
    assert "4 jobs; 2 completed." in markdown and "| optimizer | optimizer.lr |" in markdown
    assert "`trainer.max_epochs=1`" in markdown  # the same in every job: said once, not a column
    assert sum(line.startswith("| 1 | failed | sgd | 1000000000.0 |") for line in markdown.splitlines()) == 1


def test_each_completed_job_has_its_hparams_row(sweep):
    _, sweep_dir = sweep
    for job, optimizer in (("0", "torch.optim.SGD"), ("2", "torch.optim.Adam")):
        values, metrics = hparams(sweep_dir / job / "tensorboard")
        assert values["optimizer/_target_"] == optimizer and values["optimizer/lr"] == pytest.approx(0.05)
        assert {"hp/best_val_top1", "hp/val_top1", "hp/val_top5"} <= set(metrics)


def test_sweep_summary_command_reports_a_killed_job_as_unfinished(sweep, tmp_path):
    _, sweep_dir = sweep
    copy = shutil.copytree(sweep_dir, tmp_path / "sweep")
    for name in ("summary.md", "summary.csv"):
        (copy / name).unlink()
    # a job killed at its start: Hydra wrote .hydra/, the job its `running` status, nothing else
    status = json.loads((copy / "2" / "status.json").read_text())
    shutil.rmtree(copy / "2")
    (copy / "2" / ".hydra").mkdir(parents=True)
    shutil.copy(sweep_dir / "2" / ".hydra" / "overrides.yaml", copy / "2" / ".hydra")
    (copy / "2" / "status.json").write_text(json.dumps({"status": "running", "started": status["started"]}))
    before = files_left(tmp_path)
    result = run_entry("sweep_summary.py", str(copy))
    assert "| 2 | unfinished | adam |" in result.stdout
    rows = {row["job"]: row for row in read_rows(copy / "summary.csv")}
    assert rows["2"]["status"] == "unfinished" and "killed" in rows["2"]["reason"] and rows["2"]["best_val_top1"] == ""
    assert rows["0"] == read_rows(sweep_dir / "summary.csv")[0]
    # the summary and nothing else: no .hydra/, log, run lock or status of its own, no outputs/ where it was started
    assert files_left(tmp_path) == before | {str(copy / "summary.md"), str(copy / "summary.csv")}
    run_entry("sweep_summary.py", f"sweep={quoted(str(copy))}")  # the key=value form of the same command
    assert read_rows(copy / "summary.csv") == list(rows.values())


@pytest.mark.parametrize(
    ("folder", "said"),
    [
        ("", "{folder} holds no job directories of a multirun (<job>/.hydra/overrides.yaml)"),
        ("missing", "No folder at {folder}: pass a directory that train.py wrote"),
    ],
    ids=["empty", "missing"],
)
def test_sweep_summary_command_refuses_a_folder_without_jobs_and_creates_none(tmp_path, folder, said):
    before = files_left(tmp_path)
    result = run_entry("sweep_summary.py", str(tmp_path / folder), check=False)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"error: {said.format(folder=tmp_path / folder)}"), lines[0]
    assert files_left(tmp_path) == before


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher is not installed (pip install -e '.[slurm]')",
)
def test_slurm_launcher_asks_for_the_trainers_nodes_and_processes(tmp_path):
    launcher = compose_config(
        ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"], tmp_path
    ).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
