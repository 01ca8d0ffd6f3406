"""Reading what a run left in its directory: TensorBoard scalars, timing.csv, status.json and its config."""

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from user_errors import UserError

COMPLETED, FAILED = "completed", "failed"
EVENTS = "events.out.tfevents.*"


@dataclass
class RunRecord:
    path: Path
    curves: dict[str, dict[int, float]]  # tag -> {epoch: value}, epochs counted from 0
    final: dict[str, float]  # test/*, logged once after training
    timing: dict[str, float] = field(default_factory=dict)  # timing.csv's row "all"
    config: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    wall_s: float = math.nan  # first to last logged point

    def series(self, tag: str) -> tuple[list[int], list[float]]:
        points = sorted(self.curves.get(tag, {}).items())
        return [epoch for epoch, _ in points], [value for _, value in points]


def find_runs(folder: Path) -> list[Path]:
    """The run itself, or the runs of a sweep in job order (report.py has checked that the folder exists)."""
    if any(folder.glob(f"tensorboard/**/{EVENTS}")):
        return [folder]
    runs = [path for path in sorted(folder.iterdir(), key=job_order) if any(path.glob(f"tensorboard/**/{EVENTS}"))]
    if not runs:
        raise UserError(
            f"{folder} holds no run with TensorBoard event files (<run>/tensorboard/events.out.tfevents.*): pass the directory of a run of train.py (logger=tensorboard) or of a sweep of them."
        )
    return runs


def job_order(path: Path) -> tuple:
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def read_scalars(event_folder: Path) -> dict[str, list[Any]]:
    """tag -> its ScalarEvents (step, wall_time, value) as TensorBoard shows them: a resumed run's orphans purged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # slow: only where read

    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # its warnings about the graph logged twice
    sizes = {"scalars": 0, "images": 1, "tensors": 1, "histograms": 1}
    accumulator = EventAccumulator(str(event_folder), size_guidance=sizes, purge_orphaned_data=True).Reload()
    return {tag: accumulator.Scalars(tag) for tag in accumulator.Tags()["scalars"]}


def read_curves(run: Path) -> tuple[dict[str, dict[int, float]], dict[str, float], float]:
    """Per-epoch curves, the test/* values and the wall time spanned; a multirun job's events are one folder lower."""
    scalars = read_scalars(
        min((path.parent for path in (run / "tensorboard").rglob(EVENTS)), default=run / "tensorboard")
    )
    epoch_at_step: dict[int, int] = {}
    for event in scalars.get("epoch", []):  # an epoch's end and the next one's start may share a step
        epoch_at_step[event.step] = min(int(event.value), epoch_at_step.get(event.step, int(event.value)))
    curves = {
        tag: {epoch_at_step.get(event.step, position): event.value for position, event in enumerate(events)}
        for tag, events in scalars.items()
        if tag.startswith(("train/", "val/")) and tag != "train/lr"
    }
    final = {tag: events[-1].value for tag, events in scalars.items() if tag.startswith("test/")}
    times = [event.wall_time for events in scalars.values() for event in events]
    return curves, final, (max(times) - min(times)) if times else math.nan


def read_timing(run: Path) -> dict[str, dict[str, float]]:
    """callbacks/timing.py's timing.csv by epoch ("0", "1", ..., the run's "all"): train_s, val_s, ...; {} if none."""
    path = Path(run) / "timing.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as file:
        return {
            row.pop("epoch"): {k: float(v) if v else math.nan for k, v in row.items()} for row in csv.DictReader(file)
        }


def read_run(run: Path) -> RunRecord:
    """Every record of a run, only ever read as data (text files, never a checkpoint): one that train.py did not write
    is one sentence."""
    curves, final, wall_s = read_curves(run)
    config, overrides = run / ".hydra" / "config.yaml", run / ".hydra" / "overrides.yaml"
    try:
        overrides = list(yaml.safe_load(overrides.read_text()) or []) if overrides.is_file() else []
        config = (yaml.safe_load(config.read_text()) or {}) if config.is_file() else {}  # gone: none shown
        timing = read_timing(run).get("all", {})
        if not isinstance(config, dict) or not all(isinstance(override, str) for override in overrides):
            raise ValueError(".hydra/ holds no composed config")
    except (yaml.YAMLError, csv.Error, ValueError, TypeError, KeyError, AttributeError) as error:
        reason = " ".join(str(error).split())[:120] or error.__class__.__name__
        raise UserError(
            f"The records of {run} (.hydra/config.yaml, .hydra/overrides.yaml, timing.csv) are not those train.py writes ({reason}): report a run of train.py."
        ) from error
    return RunRecord(run, curves, final, timing, config, overrides, wall_s)
