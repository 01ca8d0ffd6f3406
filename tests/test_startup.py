"""The entry scripts answer help, config printing, completion and mistakes before the heavy imports (docs/performance.md,
start-up): `python -X importtime` lists every module a command imported."""

import os
import subprocess
import sys

import pytest

from tests.helpers.commands import REPO

ENTRY_SCRIPTS = ["train.py", "eval.py", "compare.py", "export.py", "predict.py", "report.py", "summarize.py"]


def imported(arguments: list[str], **environment: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *arguments],
        cwd=REPO,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    return result, modules


@pytest.mark.parametrize("script", ENTRY_SCRIPTS)
def test_help_imports_no_torch(script):
    result, modules = imported([script, "--help"])
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-2000:]
    assert "torch" not in modules and "lightning" not in modules


@pytest.mark.parametrize(
    ("arguments", "environment"),
    [
        (["train.py", "--cfg", "job"], {}),
        (["train.py", "--info"], {}),
        (["train.py", "-sc", "query=bash"], {"COMP_LINE": "python train.py optimizer.l", "COMP_POINT": "27"}),
    ],
)
def test_config_and_completion_import_no_torch(arguments, environment):
    result, modules = imported(arguments, **environment)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch" not in modules
    if "-sc" in arguments:
        assert "optimizer.lr=" in result.stdout


def test_a_mistyped_value_is_refused_before_lightning_is_imported(tmp_path):
    result, modules = imported(["train.py", "optimizer.lr=abc", f"paths.log_dir={tmp_path}"])
    assert result.returncode == 2
    assert "error: optimizer.lr=abc is not a number" in result.stderr
    assert "lightning" not in modules
    assert not (tmp_path / "train").exists()
