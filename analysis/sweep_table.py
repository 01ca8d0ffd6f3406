"""The table of a sweep, one row per job: summary.md and summary.csv beside the jobs, and in report.md."""

import json
import math
from pathlib import Path
from typing import Any

import yaml

from analysis.prediction_files import markdown_rows, write_csv
from analysis.run_records import COMPLETED, FAILED, job_order, read_curves, read_timing
from user_errors import UserError, replace_whole

METRIC_COLUMNS = "best_val_top1 best_epoch val_top5 final_val_loss test_top1 epochs wall_s samples_per_s".split()
UNFINISHED = "unfinished"
UNFINISHED_REASON = "no outcome recorded: the job was killed, stopped by a signal, or is still running"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep (each has Hydra's .hydra/overrides.yaml), in job order."""
    return sorted((path.parent.parent for path in Path(sweep_dir).glob("*/.hydra/overrides.yaml")), key=job_order)


def job_row(job_dir: Path) -> dict[str, Any]:
    """Status (status.json, else completed once timing.csv has its "all" row), overrides and metrics."""
    timing = read_timing(job_dir)
    try:
        status = json.loads((job_dir / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        status = {"status": COMPLETED if "all" in timing else UNFINISHED}
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())  # plain: interpolations stay text
    pairs = (str(override).split("=", 1) for override in (overrides if isinstance(overrides, list) else []))
    state = status.get("status") if status.get("status") in (COMPLETED, FAILED) else UNFINISHED
    reason = status.get("reason", "") if state == FAILED else UNFINISHED_REASON if state == UNFINISHED else ""
    curves, final, _ = read_curves(job_dir) if (job_dir / "tensorboard").is_dir() else ({}, {}, None)
    top1, loss = curves.get("val/top1", {}), curves.get("val/loss", {})
    best = max(top1, key=lambda epoch: (top1[epoch], -epoch), default="")  # the first best, as ModelCheckpoint keeps
    speed = (timing.get("all") or timing[list(timing)[-1]]).get("samples_per_s", math.nan) if timing else math.nan
    metrics = {  # NaN and "": not known (a job that failed, or has not got there yet)
        "best_val_top1": top1.get(best, math.nan),
        "best_epoch": best,
        "val_top5": curves.get("val/top5", {}).get(best, math.nan),
        "final_val_loss": loss[max(loss)] if loss else math.nan,
        "test_top1": final.get("test/top1", math.nan),
        "epochs": sum(epoch != "all" for epoch in timing) if timing else "",
        "wall_s": status.get("wall_s", math.nan),
        "samples_per_s": speed,
    }
    overrides = {key.lstrip("+~"): value[0] if value else "(deleted)" for key, *value in pairs}
    return {"job": job_dir.name, "status": state, **overrides, **metrics, "reason": reason}


def summarize(sweep_dir: Path, ended: dict[Path, dict] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and the override columns; `ended`: rows of ended jobs, reused rather than read again, and added to."""
    if not (jobs := job_dirs(sweep_dir)):
        raise UserError(
            f"{sweep_dir} holds no job directories of a multirun (<job>/.hydra/overrides.yaml): pass a sweep directory such as logs/train/multiruns/<date>_<time>."
        )
    ended = {} if ended is None else ended
    rows = [ended.get(job) or job_row(job) for job in jobs]
    ended.update((job, row) for job, row in zip(jobs, rows) if row["status"] != UNFINISHED)
    fixed = {"job", "status", *METRIC_COLUMNS, "reason"}
    return rows, list(dict.fromkeys(key for row in rows for key in row if key not in fixed))


def write_summary(sweep_dir: Path, ended: dict[Path, dict[str, Any]] | None = None) -> tuple[Path, Path, str]:
    """summary.csv (every override) and summary.md (the table below); returns both paths and the Markdown."""
    rows, override_columns = summarize(sweep_dir, ended)
    columns = ["job", "status", *override_columns, *METRIC_COLUMNS, "reason"]
    known = lambda value: "" if isinstance(value, float) and math.isnan(value) else value  # noqa: E731
    write_csv(sweep_dir / "summary.csv", columns, ([known(row.get(key, "")) for key in columns] for row in rows))
    completed = sum(row["status"] == COMPLETED for row in rows)
    lines = [f"# Sweep {sweep_dir}", "", f"{len(rows)} jobs; {completed} completed.", ""]
    markdown = "\n".join(lines + markdown_table(rows, override_columns)) + "\n"
    replace_whole(sweep_dir / "summary.md", markdown.encode())  # whole: jobs running at once each rewrite it
    return sweep_dir / "summary.md", sweep_dir / "summary.csv", markdown


def markdown_table(rows: list[dict[str, Any]], override_columns: list[str]) -> list[str]:
    """The overrides every job shares in one line, then a column for each that differs, the metrics and any reasons."""
    varying = [key for key in override_columns if len({row.get(key, "") for row in rows}) > 1]
    common = [f"`{key}={rows[0][key]}`" for key in override_columns if key not in varying and key in rows[0]]
    columns = ["job", "status", *varying, *METRIC_COLUMNS] + (["reason"] if any(row["reason"] for row in rows) else [])
    lines = [f"Every job: {' '.join(common)}", ""] if common else []
    return lines + markdown_rows(columns, ([cell(row.get(name, "")) for name in columns] for row in rows))


def cell(value: Any) -> Any:
    """A number as a table shows it: 4 significant digits, or 4 decimals below 1; NaN (not known) empty."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}" if abs(value) >= 1 else f"{value:.4f}"
    return value
