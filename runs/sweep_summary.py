"""The summary of a sweep directory: one row per job, as `summary.md` and `summary.csv` beside the jobs.

A row holds the job's overrides (one column per overridden key), its status (completed, failed with
the reason, or unfinished: killed or still running; runs/job_status.py), and what the job left in its
directory: best val top-1 and the val top-5 of that same epoch, the final val loss (TensorBoard
events), epochs trained and training samples/s (timing.csv), and wall time (status.json). A job that
failed still shows whatever it logged before failing.

Written after every job of a multirun and at its end (`WriteSweepSummary`, a Hydra callback), and by
`python sweep_summary.py SWEEP_DIR` on a finished or interrupted sweep. A multirun with failed jobs ends
with the line `N of M jobs failed, reasons in <sweep dir>/summary.md` and exit code 2, printed and raised
here in `on_multirun_end`: failed jobs return normally from the task function (runs/exits.py), so that
Hydra's sweeper does not end the sweep with the first failure's traceback instead.
"""

import contextlib
import csv
import logging
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from runs.job_status import COMPLETED, FAILED, read_status
from user_errors import USER_ERROR_EXIT_CODE, UserError

log = logging.getLogger(__name__)

SUMMARY_NAME = "summary"
METRIC_COLUMNS = ["best_val_top1", "val_top5", "final_val_loss", "epochs", "wall_s", "samples_per_s"]
UNFINISHED = "unfinished"
UNFINISHED_REASON = "no outcome recorded: the job was killed, stopped by a signal, or is still running"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep (each has Hydra's .hydra/overrides.yaml), in job-number order."""
    jobs = [path.parent.parent for path in Path(sweep_dir).glob("*/.hydra/overrides.yaml")]
    return sorted(jobs, key=lambda job: (0, int(job.name), "") if job.name.isdigit() else (1, 0, job.name))


def overrides_of(job_dir: Path) -> dict[str, str]:
    """{"optimizer.lr": "0.01", ...} from the job's command-line overrides (`+key`, `++key`, `~key` as `key`)."""
    pairs = (str(override).split("=", 1) for override in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    return {key.lstrip("+~"): value[0] if value else "(deleted)" for key, *value in pairs}


def _val_scalars(tensorboard_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} for the validation tags, over every event file of the run."""
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,  # slow import: only when summarising
    )

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(tensorboard_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(
            str(path), size_guidance={"scalars": 0, "images": 1, "tensors": 1, "histograms": 1}
        ).Reload()
        for tag in set(accumulator.Tags()["scalars"]) & {"val/top1", "val/top5", "val/loss"}:
            scalars.setdefault(tag, {}).update((event.step, event.value) for event in accumulator.Scalars(tag))
    return scalars


def _metrics(job_dir: Path) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if (job_dir / "tensorboard").is_dir():
        scalars = _val_scalars(job_dir / "tensorboard")
        top1 = scalars.get("val/top1", {})
        if top1:
            best_step = max(
                top1, key=lambda step: (top1[step], -step)
            )  # the first epoch that reached the best, as ModelCheckpoint keeps it
            metrics["best_val_top1"] = top1[best_step]
            metrics["val_top5"] = scalars.get("val/top5", {}).get(best_step, math.nan)
        if scalars.get("val/loss"):
            metrics["final_val_loss"] = scalars["val/loss"][max(scalars["val/loss"])]
    timing = job_dir / "timing.csv"
    if timing.is_file():
        with timing.open(newline="") as file:
            rows = list(csv.DictReader(file))
        metrics["epochs"] = sum(row["epoch"] != "all" for row in rows)
        overall = [row for row in rows if row["epoch"] == "all"] or rows[-1:]
        if overall and overall[0]["samples_per_s"]:
            metrics["samples_per_s"] = float(overall[0]["samples_per_s"])
    return metrics


def job_row(job_dir: Path) -> dict[str, Any]:
    status = read_status(job_dir) or {}
    state = status.get("status") if status.get("status") in (COMPLETED, FAILED) else UNFINISHED
    reason = status.get("reason", "") if state == FAILED else UNFINISHED_REASON if state == UNFINISHED else ""
    row = {"job": job_dir.name, "status": state, **overrides_of(job_dir), **_metrics(job_dir), "reason": reason}
    if "wall_s" in status:
        row["wall_s"] = status["wall_s"]
    return row


def summarize(
    sweep_dir: Path, ended: dict[Path, dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and the override columns (in order of first appearance).

    `ended`: rows of jobs that have ended, reused instead of reading their events again, and added to.
    """
    jobs = job_dirs(sweep_dir)
    if not jobs:
        raise UserError(
            f"{sweep_dir} holds no job directories of a multirun (<job>/.hydra/overrides.yaml): pass a sweep directory such as logs/train/multiruns/<date>_<time>."
        )
    ended = {} if ended is None else ended
    rows = []
    for job in jobs:
        row = ended.get(job) or job_row(job)
        if row["status"] != UNFINISHED:
            ended[job] = row
        rows.append(row)
    override_columns = list(dict.fromkeys(key for job in jobs for key in overrides_of(job)))
    return rows, override_columns


def write_summary(sweep_dir: Path, ended: dict[Path, dict[str, Any]] | None = None) -> tuple[Path, Path, str]:
    """Writes summary.csv (every override) and summary.md (the overrides that differ between jobs; the
    others listed once above the table); returns both paths and the Markdown. `ended`: as for summarize."""
    sweep_dir = Path(sweep_dir)
    rows, override_columns = summarize(sweep_dir, ended)
    csv_path, markdown_path = sweep_dir / f"{SUMMARY_NAME}.csv", sweep_dir / f"{SUMMARY_NAME}.md"
    columns = ["job", "status", *override_columns, *METRIC_COLUMNS, "reason"]
    with _replacing(csv_path) as partial, partial.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows({name: _csv_value(row.get(name, "")) for name in columns} for row in rows)
    varying = [key for key in override_columns if len({row.get(key, "") for row in rows}) > 1]
    common = [f"`{key}={rows[0][key]}`" for key in override_columns if key not in varying and key in rows[0]]
    markdown_columns = ["job", "status", *varying, *METRIC_COLUMNS, "reason"]
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(rows)} jobs; {sum(row['status'] == COMPLETED for row in rows)} completed.",
    ]
    if common:
        lines += ["", f"Every job: {' '.join(common)}"]
    lines += ["", "| " + " | ".join(markdown_columns) + " |", "|" + " --- |" * len(markdown_columns)]
    lines += [
        "| " + " | ".join(_markdown_cell(_format(row.get(name, ""))) for name in markdown_columns) + " |"
        for row in rows
    ]
    markdown = "\n".join(lines) + "\n"
    with _replacing(markdown_path) as partial:
        partial.write_text(markdown)
    return markdown_path, csv_path, markdown


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A file of this process to write, renamed onto `path` at the end: jobs running at once (joblib, submitit)
    each rewrite the summary, and a reader never sees half of one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    yield partial
    os.replace(partial, path)


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}" if abs(value) >= 1 else f"{value:.4f}"
    return value


def _csv_value(value: Any) -> Any:
    return "" if isinstance(value, float) and math.isnan(value) else value


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


class WriteSweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml, hydra.callbacks): the summary after each job and at the end of a multirun.

    The rows of jobs that have ended are kept, so that a long sweep (an Optuna search of hundreds of
    trials) does not read every earlier job's events again after each job.
    """

    def __init__(self) -> None:
        self._ended: dict[Path, dict[str, Any]] = {}

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN and rank_zero_only.rank == 0:
            write_summary(Path(config.hydra.sweep.dir), self._ended)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if rank_zero_only.rank != 0 or not job_dirs(sweep_dir):
            return
        markdown_path, csv_path, markdown = write_summary(sweep_dir, self._ended)
        log.info(f"Sweep summary: {markdown_path} and {csv_path}\n{markdown}")
        rows, _ = summarize(sweep_dir, self._ended)
        failed = sum(row["status"] == FAILED for row in rows)
        if failed:
            print(f"{failed} of {len(rows)} jobs failed, reasons in {markdown_path}", file=sys.stderr, flush=True)
            raise SystemExit(USER_ERROR_EXIT_CODE)
