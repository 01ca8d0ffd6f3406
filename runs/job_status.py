"""`<job dir>/status.json`: how each job of a multirun ended, so that a sweep summary can say why a job failed.

A job's failure is recorded from inside the task function (runs/exits.py exit_on_user_error calls
`record_job_failure` with the exception, whose one sentence is the one a single run of that job would
end with), and the task function returns normally: Hydra's sweepers re-raise a failed job's exception
after the whole batch, which would end the multirun with a traceback and skip `on_multirun_end`, where
the sweep's closing line is printed (runs/sweep_summary.py). A job that fails outside the task function
(Hydra's JobReturn status FAILED) is recorded from its exception, read through the public
`JobReturn.return_value`, which raises it. `on_job_end` runs for every job: this callback writes the
job's outcome there. A job killed outright (SIGKILL, out of memory) or
stopped by a signal (which ends the whole sweep, see runs/exits.py) never reaches `on_job_end` and
keeps the `running` status written at its start, which the summary reports as unfinished.

Written in multiruns only (single runs have their exit code and train.log), and by process 0 only:
under SLURM every task of a job runs the job function and its callbacks.
"""

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from analysis.run_records import COMPLETED, FAILED, RUNNING, STATUS_FILE
from user_errors import UserError


def write_status(job_dir: Path, status: dict[str, Any]) -> None:
    """Through a temporary file and a rename: a kill never leaves half a status."""
    path = Path(job_dir) / STATUS_FILE
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(status, indent=2))
    os.replace(partial, path)


def failure_reason(error: BaseException) -> str:
    """One line: the message of a UserError (already a sentence), else the last line of the traceback a single
    run would show (the exception's type and message), with where it was raised when the message is empty."""
    message = " ".join(str(error).split())
    if isinstance(error, UserError) and message:
        return message
    if message:
        return f"{error.__class__.__name__}: {message}"
    frames = traceback.extract_tb(error.__traceback__)
    where = f" in {frames[-1].name} ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{error.__class__.__name__} (without a message) raised{where}; the job's train.log has the traceback."


_job_failure: str | None = None


def record_job_failure(error: BaseException) -> None:
    """The failure of the job running in this process, for its status.json (written when the job ends)."""
    global _job_failure
    _job_failure = failure_reason(error)


class RecordJobStatus(Callback):
    """Hydra callback (conf/hydra/default.yaml, hydra.callbacks): status.json at the start and end of each job."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _records(config):
            self._started = time.time()
            write_status(Path(config.hydra.runtime.output_dir), {"status": RUNNING, "started": self._started})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _records(config):
            return
        global _job_failure
        failure, _job_failure = _job_failure, None
        status: dict[str, Any] = {"started": self._started, "wall_s": time.time() - self._started}
        if failure is not None:
            status.update(status=FAILED, reason=failure)
        elif job_return.status == JobStatus.FAILED:
            status.update(status=FAILED, reason="the job failed without an exception to say why")
            try:
                _ = job_return.return_value  # raises the job's exception: Hydra's public way to read it
            except Exception as error:
                status.update(status=FAILED, reason=failure_reason(error))
        else:
            status.update(status=COMPLETED, result=_plain(job_return.return_value))
        write_status(Path(config.hydra.runtime.output_dir), status)


def _records(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN and rank_zero_only.rank == 0


def _plain(value: Any) -> Any:
    """The job function's return value, if it is plain data (train.py: the best val top-1 or None)."""
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
