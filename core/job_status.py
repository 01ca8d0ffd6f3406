"""`<job dir>/status.json`: how each job of a multirun ended, so that a sweep summary can say why a job failed.

Hydra's BasicLauncher runs every job of a sweep even when one raises: `run_job` catches the exception
and stores it in the job's JobReturn (status FAILED, `return_value` the exception); only after the
whole batch has run does the sweeper re-raise the first failure, so the multirun exits non-zero and
`on_multirun_end` callbacks are not called. `on_job_end`, in contrast, runs for every job, failed or
not: this callback writes the job's outcome there. A job killed outright (SIGKILL, out of memory) or
stopped by a signal (which ends the whole sweep, see core/errors.py) never reaches `on_job_end` and
keeps the `running` status written at its start, which the summary reports as unfinished.

Written in multiruns only (single runs have their exit code and train.log), and by process 0 only:
under SLURM every task of a job runs the job function and its callbacks.
"""

import json
import os
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from core.errors import UserError

STATUS_FILE = "status.json"
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


def write_status(job_dir: Path, status: dict[str, Any]) -> None:
    """Through a temporary file and a rename: a kill never leaves half a status."""
    path = Path(job_dir) / STATUS_FILE
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(status, indent=2))
    os.replace(partial, path)


def read_status(job_dir: Path) -> dict[str, Any] | None:
    path = Path(job_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def failure_reason(error: BaseException) -> str:
    """One line: the message of a UserError (already a sentence), else the exception's type and message."""
    message = " ".join(str(error).split())
    return message if isinstance(error, UserError) else f"{error.__class__.__name__}: {message}"


class RecordJobStatus(Callback):
    """Hydra callback (conf/hydra/default.yaml, hydra.callbacks): status.json at the start and end of each job."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _records(config):
            self._started = time.time()
            write_status(Path(config.hydra.runtime.output_dir), {"status": RUNNING, "started": self._started})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _records(config):
            return
        status: dict[str, Any] = {"started": self._started, "wall_s": time.time() - self._started}
        if job_return.status == JobStatus.COMPLETED:
            status.update(status=COMPLETED, result=_plain(job_return.return_value))
        else:  # reading return_value of a failed job would raise its exception again
            status.update(status=FAILED, reason=failure_reason(job_return._return_value))
        write_status(Path(config.hydra.runtime.output_dir), status)


def _records(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN and rank_zero_only.rank == 0


def _plain(value: Any) -> Any:
    """The job function's return value, if it is plain data (train.py: the best val top-1 or None)."""
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
