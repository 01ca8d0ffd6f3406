"""Sweeps through Hydra's launcher plugins, as docs/scale.md shows them: submitit's local executor (the SLURM
launcher's local twin) and joblib (jobs at once), each ending with job directories, status.json and summary.md."""

import importlib.util
import json

import pytest

from tests.helpers.commands import REPO, SCALE_SHORTENING, run_entry
from tests.helpers.csv_rows import read_rows

# minutes of CPU: run by `pytest -m slow`
pytestmark = pytest.mark.slow

# docs/scale.md, verbatim apart from SCALE_SHORTENING and the data and log folders
SUBMITIT_LOCAL = "python train.py -m hydra/launcher=submitit_local optimizer=sgd,adam"
JOBLIB = "OMP_NUM_THREADS=1 python train.py -m hydra/launcher=joblib hydra.launcher.n_jobs=2 optimizer=sgd,adam"


def needs(plugin: str, extra: str):
    return pytest.mark.skipif(
        importlib.util.find_spec(f"hydra_plugins.{plugin}") is None,
        reason=f"{plugin} is not installed (pip install -e '.[{extra}]')",
    )


def sweep_of(command: str, mnist_dir, log_dir, monkeypatch) -> tuple:
    words = command.split()
    for word in words[: words.index("python")]:  # environment variables written before the command
        monkeypatch.setenv(*word.split("=", 1))
    run_entry(
        *words[words.index("python") + 1 :], *SCALE_SHORTENING, f"data.data_dir={mnist_dir}", f"paths.log_dir={log_dir}"
    )
    (sweep_dir,) = (log_dir / "train" / "multiruns").iterdir()
    statuses = [json.loads((sweep_dir / job / "status.json").read_text()) for job in ("0", "1")]
    return sweep_dir, statuses


def check_two_completed_jobs(sweep_dir, statuses) -> None:
    assert sorted(path.name for path in sweep_dir.iterdir() if path.is_dir() and not path.name.startswith(".")) == [
        "0",
        "1",
    ]
    assert [status["status"] for status in statuses] == ["completed", "completed"]
    for job in ("0", "1"):
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").is_file() and (sweep_dir / job / "train.log").is_file()
    rows = read_rows(sweep_dir / "summary.csv")
    assert [(row["job"], row["optimizer"], row["status"]) for row in rows] == [
        ("0", "sgd", "completed"),
        ("1", "adam", "completed"),
    ]
    assert [float(row["best_val_top1"]) for row in rows] == pytest.approx([status["result"] for status in statuses])
    assert "2 jobs; 2 completed." in (sweep_dir / "summary.md").read_text()


@needs("hydra_submitit_launcher", "slurm")
def test_submitit_local_executor_runs_the_sweep_as_submitit_jobs(mnist_dir, tmp_path, monkeypatch):
    sweep_dir, statuses = sweep_of(SUBMITIT_LOCAL, mnist_dir, tmp_path, monkeypatch)
    check_two_completed_jobs(sweep_dir, statuses)
    # each job ran as a submitit job: its own process, its log and result pickle in the submitit folder
    submitted = [
        folder for folder in (sweep_dir / ".submitit").iterdir() if folder.name.isdigit()
    ]  # one per job id ("%j": the array's)
    assert len(submitted) == 2 and all(
        list(folder.glob("*_result.pkl")) and list(folder.glob("*_log.out")) for folder in submitted
    )


@needs("hydra_joblib_launcher", "parallel")
def test_joblib_runs_two_jobs_at_once(mnist_dir, tmp_path, monkeypatch):
    sweep_dir, statuses = sweep_of(JOBLIB, mnist_dir, tmp_path, monkeypatch)
    check_two_completed_jobs(sweep_dir, statuses)
    first, second = sorted(statuses, key=lambda status: status["started"])
    assert second["started"] < first["started"] + first["wall_s"]  # the second job started before the first ended


def test_docs_show_the_commands_these_tests_run():
    page = (REPO / "docs" / "scale.md").read_text()
    assert SUBMITIT_LOCAL in page and JOBLIB in page and " ".join(SCALE_SHORTENING) in page
