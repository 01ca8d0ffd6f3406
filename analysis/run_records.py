"""Reading what runs left in their directories: TensorBoard scalars and per-epoch curves, timing.csv,
status.json, config, overrides. The one reader of each file, for report.py, the sweep table, resume and
the benchmarks.

Scalars come from the TensorBoard event files, read with tensorboard's own EventAccumulator over the
whole folder with `purge_orphaned_data=True`, which is how TensorBoard shows it: the event files in
order, and for a resumed run the points that the interrupted session logged after the checkpoint it
restarted from dropped (callbacks/resume.py), so each epoch appears once.
"""

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from checkpoints.loading import RUN_CONFIG_KEY, load_checkpoint
from user_errors import UserError

EPOCH_TAG = "epoch"  # Lightning logs the current epoch beside every metric
TIMING_FILE = "timing.csv"  # callbacks/timing.py: a row per epoch ("0", "1", ...) and the run's ("all")
STATUS_FILE = "status.json"  # runs/hydra_callbacks.py: how a job of a multirun ended
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


@dataclass
class RunRecord:
    """One run directory's records. `curves`: tag -> {epoch: value}, epochs counted from 0 as Lightning does."""

    path: Path
    curves: dict[str, dict[int, float]]
    final: dict[str, float]  # tags logged once after training: test/*
    timing: dict[str, float] = field(default_factory=dict)  # timing.csv's row "all"
    config: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    wall_s: float = math.nan  # first to last logged point

    def series(self, tag: str) -> tuple[list[int], list[float]]:
        points = self.curves.get(tag, {})
        epochs = sorted(points)
        return epochs, [points[epoch] for epoch in epochs]


def is_run_dir(path: Path) -> bool:
    return (path / "tensorboard").is_dir() and any((path / "tensorboard").rglob("events.out.tfevents.*"))


def find_runs(folder: Path) -> list[Path]:
    """The run itself, or the runs of a sweep (its numbered job folders, in job order)."""
    if not folder.is_dir():
        raise UserError(
            f"{folder} is not a folder: pass a run directory (logs/train/runs/<run>) or a sweep directory (logs/train/multiruns/<sweep>)."
        )
    if is_run_dir(folder):
        return [folder]
    runs = [child for child in folder.iterdir() if child.is_dir() and is_run_dir(child)]
    if not runs:
        raise UserError(
            f"{folder} holds no run with TensorBoard event files (<run>/tensorboard/events.out.tfevents.*): pass the directory of a run of train.py (logger=tensorboard) or of a sweep of them."
        )
    return sorted(runs, key=lambda run: (not run.name.isdigit(), int(run.name) if run.name.isdigit() else 0, run.name))


def event_dir(tensorboard_dir: Path) -> Path:
    """The folder holding a run's event files: <run>/tensorboard, or for a multirun job the one folder below it
    named by the job's overrides (conf/logger/tensorboard.yaml)."""
    if any(tensorboard_dir.glob("events.out.tfevents.*")):
        return tensorboard_dir
    holding = sorted({path.parent for path in tensorboard_dir.rglob("events.out.tfevents.*")})
    return holding[0] if holding else tensorboard_dir


def read_scalars(event_folder: Path, tags: set[str] | None = None) -> dict[str, list[Any]]:
    """tag -> its ScalarEvents (step, wall_time, value) in order, for every scalar tag or those of `tags`."""
    # a slow import, so only where event files are read: not by every run of train.py
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # its warnings about the graph logged twice
    accumulator = EventAccumulator(
        str(event_folder),
        purge_orphaned_data=True,
        size_guidance={"scalars": 0, "images": 1, "tensors": 1, "histograms": 1},  # every scalar, little else
    ).Reload()
    available = accumulator.Tags()["scalars"]
    return {tag: accumulator.Scalars(tag) for tag in available if tags is None or tag in tags}


def read_curves(tensorboard_dir: Path) -> tuple[dict[str, dict[int, float]], dict[str, float], float]:
    """Per-epoch curves (tag -> {epoch: value}), the once-logged test/* values, and the wall time spanned."""
    scalars = read_scalars(tensorboard_dir)
    epoch_at_step: dict[int, int] = {}
    for event in scalars.get(EPOCH_TAG, []):
        # the end of epoch e and the first step of epoch e+1 can share a step: epoch metrics belong to e
        epoch_at_step[event.step] = min(int(event.value), epoch_at_step.get(event.step, int(event.value)))
    curves: dict[str, dict[int, float]] = {}
    final: dict[str, float] = {}
    times: list[float] = []
    for tag, events in scalars.items():
        times += [event.wall_time for event in events]
        if tag.startswith("test/"):
            final[tag] = events[-1].value
        elif tag.startswith(("train/", "val/", "time/")) and tag != "train/lr":
            # by epoch; a later point of the same epoch (e.g. validation within the epoch) replaces an earlier one
            curves[tag] = {
                epoch_at_step.get(event.step, position): event.value for position, event in enumerate(events)
            }
    return curves, final, (max(times) - min(times)) if times else math.nan


def read_timing(run: Path) -> dict[str, dict[str, float]]:
    """timing.csv by epoch ("0", "1", ..., and "all" for the whole run once it ended): train_s, val_s, samples,
    samples_per_s, data_wait_frac, peak_memory_mb; empty where the run has none."""
    path = Path(run) / TIMING_FILE
    if not path.is_file():
        return {}
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    return {
        row["epoch"]: {name: float(value) if value else math.nan for name, value in row.items() if name != "epoch"}
        for row in rows
    }


def read_status(job_dir: Path) -> dict[str, Any] | None:
    """A multirun job's status.json: {"status": running|completed|failed, "reason", "wall_s", ...}, or None."""
    try:
        return json.loads((Path(job_dir) / STATUS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_config(run: Path) -> tuple[dict[str, Any], list[str]]:
    """The run's composed config and command-line overrides (.hydra/), or the config stored in its last checkpoint."""
    hydra_dir = run / ".hydra"
    if (hydra_dir / "config.yaml").is_file():
        config = yaml.safe_load((hydra_dir / "config.yaml").read_text()) or {}
        overrides = (
            yaml.safe_load((hydra_dir / "overrides.yaml").read_text())
            if (hydra_dir / "overrides.yaml").is_file()
            else []
        )
        return config, list(overrides or [])
    checkpoints = sorted((run / "checkpoints").glob("*.ckpt"), key=lambda path: path.stat().st_mtime)
    if checkpoints:
        return load_checkpoint(checkpoints[-1])[RUN_CONFIG_KEY], []
    return {}, []


def read_run(run: Path) -> RunRecord:
    """Every record of a run; records that train.py did not write (a YAML tag that builds objects, a binary timing.csv)
    are one sentence: they are only ever read as data."""
    curves, final, wall_s = read_curves(event_dir(run / "tensorboard"))
    try:
        config, overrides = read_config(run)
        timing = read_timing(run).get("all", {})
    except (yaml.YAMLError, UnicodeDecodeError, csv.Error, ValueError, KeyError, AttributeError) as error:
        reason = " ".join(str(error).split())[:120] or error.__class__.__name__
        raise UserError(
            f"The records of {run} (.hydra/config.yaml, .hydra/overrides.yaml, timing.csv) are not those train.py writes ({reason}): report a run of train.py."
        ) from error
    if not isinstance(config, dict) or not all(isinstance(override, str) for override in overrides):
        raise UserError(
            f"The config of {run} (.hydra/config.yaml) is not a composed config of train.py: report a run of train.py."
        )
    return RunRecord(run, curves, final, timing, config, overrides, wall_s)
