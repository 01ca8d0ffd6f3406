"""Which run directory name a launcher's environment gives (runs/entry_points.py), and the refusal of a multi-process
torchrun without --rdzv-id through train.py; fast: no training (tests/test_multinode.py trains on two "nodes")."""

import pytest

from tests.helpers.commands import run_entry
from user_errors import UserError

LAUNCHER_VARIABLES = (
    "TORCHELASTIC_RUN_ID",
    "WORLD_SIZE",
    "RANK",
    "SLURM_NTASKS",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_PROCID",
)


@pytest.fixture
def launcher_environment(monkeypatch):
    for variable in LAUNCHER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("environment", "name"),
    [
        ({}, None),
        ({"TORCHELASTIC_RUN_ID": "mnist-2nodes", "WORLD_SIZE": "8"}, "torchrun-mnist-2nodes"),
        (
            {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "1"},
            None,
        ),  # one process without --rdzv-id: a timestamp, as without torchrun
        ({"SLURM_NTASKS": "8", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "train"}, "slurm-4242"),
        (
            {"SLURM_NTASKS": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "bash"},
            None,
        ),  # an interactive allocation: runs of their own
    ],
)
def test_the_launchers_job_id_names_the_run(environment, name, launcher_environment):
    from runs.entry_points import launcher_run_name

    for variable, value in environment.items():
        launcher_environment.setenv(variable, value)
    assert launcher_run_name() == name


def test_an_rdzv_id_that_is_no_folder_name_is_refused(launcher_environment):
    from runs.entry_points import launcher_run_name

    launcher_environment.setenv("TORCHELASTIC_RUN_ID", "../elsewhere")
    with pytest.raises(UserError, match="cannot name a run directory"):
        launcher_run_name()


def test_torchrun_of_several_processes_without_rdzv_id_stops_before_any_run_directory(tmp_path, launcher_environment):
    launcher_environment.setenv("TORCHELASTIC_RUN_ID", "none")
    launcher_environment.setenv("WORLD_SIZE", "2")
    result = run_entry("train.py", f"paths.log_dir={tmp_path}", check=False)
    assert result.returncode == 2 and "torchrun was started without --rdzv-id" in result.stderr
    assert list(tmp_path.iterdir()) == []
