"""The Hydra callbacks of conf/hydra/default.yaml, in the order they are listed there.

Hydra callback (conf/hydra/default.yaml): the files a command names are checked before its run directory exists.

Hydra creates the run directory (and the resolver of hydra.run.dir, runs/run_dir.py, creates it even
earlier for resume=true) before the task function runs; `on_run_start` comes first. Each file the config
names (ckpt_path, compare's a and b, predict's exported, resume=true's last.ckpt) is read here with the
reader its entry point uses, which refuses a file that is not one of ours (checkpoints/loading.py): one sentence
and exit code 2, and no run directory, log or config written. In a multirun the jobs' own reads check.

One writer per run directory: `<run dir>/run.lock`, an OS file lock (fcntl.flock) held while a process runs there.

The kernel releases the lock when its process ends, however it ends (a SIGKILL, a power cut on a local
disk), so a killed run never leaves its directory locked; the file itself stays, with the pid and host of
the last process that held it, which is what the refusal names. Taken in Hydra's `on_run_start`, before
Hydra writes the config and the log into the directory: `resume=true` (or `hydra.run.dir=`) into a run
directory that a live process trains in stops with one sentence and exit code 2, and changes nothing there.

Only global rank 0 takes it: under DDP Lightning starts the other processes of the same run with the same
run directory (and sets LOCAL_RANK/RANK, or SLURM sets SLURM_PROCID), which `global_rank()` reads.
Multirun jobs each get a new directory and are not locked.

Once the lock is held, the temporary files of checkpoint writes that an earlier, killed process left there
are removed (checkpoints/atomic_io.py): no live write can own them.

Hydra callback: the sweep's table (analysis/sweep_table.py) after every job of a multirun and at its end.

A multirun with failed jobs ends with the line `N of M jobs failed, reasons in <sweep dir>/summary.md`
and exit code 2, printed and raised here in `on_multirun_end`: failed jobs return normally from the task
function (runs/entry_points.py), so that Hydra's sweeper does not end the sweep with the first failure's
traceback instead.

`<job dir>/status.json`: how each job of a multirun ended, so that a sweep summary can say why a job failed.

A job's failure is recorded from inside the task function (runs/entry_points.py exit_on_user_error calls
`record_job_failure` with the exception, whose one sentence is the one a single run of that job would
end with), and the task function returns normally: Hydra's sweepers re-raise a failed job's exception
after the whole batch, which would end the multirun with a traceback and skip `on_multirun_end`, where
the sweep's closing line is printed (runs/hydra_callbacks.py). A job that fails outside the task function
(Hydra's JobReturn status FAILED) is recorded from its exception, read through the public
`JobReturn.return_value`, which raises it. `on_job_end` runs for every job: this callback writes the
job's outcome there. A job killed outright (SIGKILL, out of memory) or
stopped by a signal (which ends the whole sweep, see runs/entry_points.py) never reaches `on_job_end` and
keeps the `running` status written at its start, which the summary reports as unfinished.

Written in multiruns only (single runs have their exit code and train.log), and by process 0 only:
under SLURM every task of a job runs the job function and its callbacks.
"""

import fcntl
import json
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from runs.entry_points import exit_on_user_error, failure_reason, take_job_failure
from runs.run_dir import LAST_CHECKPOINT, global_rank
from user_errors import USER_ERROR_EXIT_CODE, UserError

# Only Hydra is imported here: these callbacks run before the task function, which checks the config before
# it imports torch and Lightning; the readers of files and records are imported where they are used.


def files_named(config: DictConfig) -> list[tuple[str, Path]]:
    """(kind, path) of the existing files an entry point's config names: checkpoints, prediction files, exported models."""
    named = []
    for key in ("ckpt_path", "a", "b"):
        value = config.get(key)
        if isinstance(value, str) and value and Path(value).is_file():
            from analysis.prediction_files import PREDICTION_FILE_SUFFIXES

            prediction_file = key != "ckpt_path" and Path(value).suffix in PREDICTION_FILE_SUFFIXES
            named.append(("predictions" if prediction_file else "checkpoint", Path(value)))
    if config.get("resume") and not config.get("ckpt_path"):
        last = Path(config.hydra.run.dir) / LAST_CHECKPOINT  # the resolver chose the run to continue
        if last.is_file():
            named.append(("checkpoint", last))
    exported = config.get("exported")
    if isinstance(exported, str) and exported and Path(exported).is_file():
        named.append(("exported", Path(exported)))
    return named


def read_named_files(config: DictConfig) -> None:
    """Each named file read as its entry point will read it (torch imported only when one is named)."""
    named = files_named(config)
    if not named:
        return
    from analysis.prediction_files import read_predictions
    from checkpoints.loading import load_checkpoint
    from deployment.exporting import read_contract

    readers = {
        "checkpoint": lambda path: load_checkpoint(path, mmap=True),
        "predictions": read_predictions,
        "exported": read_contract,
    }
    for kind, path in named:
        readers[kind](path)


class ReadNamedFiles(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_user_error():
            read_named_files(config)


LOCK_FILE = "run.lock"


class RunDirectoryInUse(UserError):
    pass


def lock_run_directory(run_dir: Path) -> int:
    """Takes the run directory's lock, writing this process's pid and host into the lock file; returns its descriptor
    (the lock lasts until it is closed or the process ends). Raises RunDirectoryInUse when another process holds it."""
    path = Path(run_dir) / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = (
            os.read(descriptor, 4096).decode(errors="replace").strip() or "a process that has not written its pid yet"
        )
        os.close(descriptor)
        raise RunDirectoryInUse(
            f"Another process ({holder}) is running in {run_dir}: wait for it to end or stop it, then run this command again "
            "(with resume=true it then continues from that run's last.ckpt)."
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(
        descriptor,
        f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(),
        0,
    )
    return descriptor


# the temporary file of a checkpoint write (checkpoints/atomic_io.py): `.<name>.ckpt.` + mkstemp's 8 characters + `.tmp`
INTERRUPTED_CHECKPOINT_WRITE = re.compile(r"^\..+\.ckpt\.[a-z0-9_]{8}\.tmp$")


def remove_interrupted_checkpoint_writes(folder: Path) -> None:
    """Deletes the temporary files that checkpoint writes killed before their rename left in `folder` (the run's
    checkpoints/, which only this project writes; not below it). Only while this process holds the run's lock."""
    stale = [path for path in folder.glob(".*.tmp") if path.is_file() and INTERRUPTED_CHECKPOINT_WRITE.match(path.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info(
            f"Removed {len(stale)} temporary file(s) of interrupted checkpoint writes: {', '.join(map(str, stale))}"
        )


class LockRunDirectory(Callback):
    """Hydra callback (conf/hydra/default.yaml, hydra.callbacks): the run directory's lock for the whole run."""

    def __init__(self) -> None:
        self._descriptor: int | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if global_rank() != 0:  # another process of a DDP run: rank 0 holds the lock for all of them
            return
        run_dir = Path(config.hydra.run.dir)  # resolving it creates the folder (runs/run_dir.py)
        run_dir.mkdir(parents=True, exist_ok=True)
        with exit_on_user_error():  # before Hydra starts the job, which would report it with a traceback
            self._descriptor = lock_run_directory(run_dir)
        remove_interrupted_checkpoint_writes(run_dir / "checkpoints")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor releases the lock
            self._descriptor = None


log = logging.getLogger(__name__)


class WriteSweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml, hydra.callbacks): the summary after each job and at the end of a multirun.

    The rows of jobs that have ended are kept, so that a long sweep (hundreds of
    trials) does not read every earlier job's events again after each job.
    """

    def __init__(self) -> None:
        self._ended: dict[Path, dict[str, Any]] = {}

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN and global_rank() == 0:
            from analysis.sweep_table import write_summary

            write_summary(Path(config.hydra.sweep.dir), self._ended)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from analysis.run_records import FAILED
        from analysis.sweep_table import job_dirs, summarize, write_summary

        sweep_dir = Path(config.hydra.sweep.dir)
        if global_rank() != 0 or not job_dirs(sweep_dir):
            return
        markdown_path, csv_path, markdown = write_summary(sweep_dir, self._ended)
        log.info(f"Sweep summary: {markdown_path} and {csv_path}\n{markdown}")
        rows, _ = summarize(sweep_dir, self._ended)
        failed = sum(row["status"] == FAILED for row in rows)
        if failed:
            print(f"{failed} of {len(rows)} jobs failed, reasons in {markdown_path}", file=sys.stderr, flush=True)
            raise SystemExit(USER_ERROR_EXIT_CODE)


def write_status(job_dir: Path, status: dict[str, Any]) -> None:
    """Through a temporary file and a rename: a kill never leaves half a status."""
    from analysis.run_records import STATUS_FILE

    path = Path(job_dir) / STATUS_FILE
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(status, indent=2))
    os.replace(partial, path)


class RecordJobStatus(Callback):
    """Hydra callback (conf/hydra/default.yaml, hydra.callbacks): status.json at the start and end of each job."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _records(config):
            from analysis.run_records import RUNNING

            self._started = time.time()
            write_status(Path(config.hydra.runtime.output_dir), {"status": RUNNING, "started": self._started})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _records(config):
            return
        from analysis.run_records import COMPLETED, FAILED

        failure = take_job_failure()
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
    return config.hydra.mode == RunMode.MULTIRUN and global_rank() == 0


def _plain(value: Any) -> Any:
    """The job function's return value, if it is plain data (train.py: the best val top-1 or None)."""
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
