"""The table of a sweep: one row per job, as `summary.md` and `summary.csv` beside the jobs, and in report.py's report.

A row holds the job's overrides (one column per overridden key), its status (completed, failed with
the reason, or unfinished: killed or still running; runs/hydra_callbacks.py), and what the job left in its
directory (analysis/run_records.py reads each file): best val top-1, its epoch and the val top-5 of that
epoch, the final val loss, the test top-1 (TensorBoard events), epochs trained and training samples/s
(timing.csv), and wall time (status.json). A job that failed still shows whatever it logged before failing.
"""

import contextlib
import csv
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from analysis.run_records import COMPLETED, FAILED, event_dir, read_curves, read_status, read_timing
from user_errors import UserError

SUMMARY_NAME = "summary"
METRIC_COLUMNS = [
    "best_val_top1",
    "best_epoch",
    "val_top5",
    "final_val_loss",
    "test_top1",
    "epochs",
    "wall_s",
    "samples_per_s",
]
UNFINISHED = "unfinished"
UNFINISHED_REASON = "no outcome recorded: the job was killed, stopped by a signal, or is still running"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep (each has Hydra's .hydra/overrides.yaml), in job-number order."""
    jobs = [path.parent.parent for path in Path(sweep_dir).glob("*/.hydra/overrides.yaml")]
    return sorted(jobs, key=lambda job: (0, int(job.name), "") if job.name.isdigit() else (1, 0, job.name))


def overrides_of(job_dir: Path) -> dict[str, str]:
    """{"optimizer.lr": "0.01", ...} from the job's command-line overrides (`+key`, `++key`, `~key` as `key`)."""
    # plain YAML: an interpolation in a sweep from elsewhere is text here, never evaluated
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = (str(override).split("=", 1) for override in (overrides if isinstance(overrides, list) else []))
    return {key.lstrip("+~"): value[0] if value else "(deleted)" for key, *value in pairs}


def _metrics(job_dir: Path) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if (job_dir / "tensorboard").is_dir():
        curves, final, _ = read_curves(event_dir(job_dir / "tensorboard"))
        top1 = curves.get("val/top1", {})
        if top1:
            # the first epoch that reached the best, as ModelCheckpoint keeps it
            best_epoch = max(top1, key=lambda epoch: (top1[epoch], -epoch))
            metrics["best_val_top1"] = top1[best_epoch]
            metrics["best_epoch"] = best_epoch
            metrics["val_top5"] = curves.get("val/top5", {}).get(best_epoch, math.nan)
        if curves.get("val/loss"):
            metrics["final_val_loss"] = curves["val/loss"][max(curves["val/loss"])]
        if "test/top1" in final:
            metrics["test_top1"] = final["test/top1"]
    timing = read_timing(job_dir)
    if timing:
        metrics["epochs"] = sum(epoch != "all" for epoch in timing)
        overall = timing.get("all") or timing[list(timing)[-1]]
        if not math.isnan(overall.get("samples_per_s", math.nan)):
            metrics["samples_per_s"] = overall["samples_per_s"]
    return metrics


def job_row(job_dir: Path) -> dict[str, Any]:
    """A multirun job's row. A run outside a multirun has no status.json: completed once its training ended
    (timing.csv's "all" row), else unfinished."""
    status = read_status(job_dir)
    if status is None:
        status = {"status": COMPLETED if "all" in read_timing(job_dir) else UNFINISHED}
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
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(rows)} jobs; {sum(row['status'] == COMPLETED for row in rows)} completed.",
        "",
        *markdown_table(rows, override_columns),
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


def markdown_table(rows: list[dict[str, Any]], override_columns: list[str]) -> list[str]:
    """The overrides shared by every job in one line, then a Markdown table: a column for each override that
    differs, the metrics, and the failure reasons where a job has one."""
    varying = [key for key in override_columns if len({row.get(key, "") for row in rows}) > 1]
    common = [f"`{key}={rows[0][key]}`" for key in override_columns if key not in varying and key in rows[0]]
    columns = ["job", "status", *varying, *METRIC_COLUMNS] + (["reason"] if any(row["reason"] for row in rows) else [])
    lines = [f"Every job: {' '.join(common)}", ""] if common else []
    lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_markdown_cell(_format(row.get(name, ""))) for name in columns) + " |" for row in rows]
    return lines


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}" if abs(value) >= 1 else f"{value:.4f}"
    return value


def _csv_value(value: Any) -> Any:
    return "" if isinstance(value, float) and math.isnan(value) else value


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
