"""How the benchmarks run their variants and compare them: fresh train.py processes timed from the inside,
alternating order, paired ratios.

Every benchmark that compares variants runs each in a process of its own, goes round them in alternating
order (ABBA: A B, B A, A B, ...) so that a drift in the machine's load hits all alike, and reports medians
and the median of the paired ratios (each repeat's variant against the same repeat's baseline), which such
a drift does not move. Per-step time is measured inside each process by StepTimer, from the start of a given
step (start-up and the first steps' warm-up left out) to the end of training.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

REPO = Path(__file__).resolve().parents[1]


def alternating(variants: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """(repeat, variant) in ABBA order: the variants in order in even repeats, reversed in odd ones."""
    for repeat in range(repeats):
        for variant in variants if repeat % 2 == 0 else reversed(variants):
            yield repeat, variant


def paired_ratio(measured: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of the repeats' ratios, each repeat's measurement against the same repeat's baseline."""
    return statistics.median(ours / theirs for ours, theirs in zip(measured, baseline, strict=True))


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def synchronize(device: torch.device) -> None:
    """Marks are host clocks: wait for queued GPU work so that they time the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(Callback):
    """Writes `path`, a JSON object: `start`, the wall clock at the start of global step `first_step`, `end`, when
    training ends, and `steps`, the optimizer steps in between. Added to a train.py run by step_timer_overrides."""

    def __init__(self, path: str, first_step: int = 0):
        self.path, self.first_step = Path(path), first_step
        self.marks: dict[str, float] = {}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.first_step and "start" not in self.marks:
            synchronize(pl_module.device)
            self.marks["start"] = time.time()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        synchronize(pl_module.device)
        self.marks.update(end=time.time(), steps=trainer.global_step - self.first_step)
        if trainer.is_global_zero:  # under DDP, one process writes the file
            self.path.write_text(json.dumps(self.marks))


def per_step_seconds(marks_path: Path) -> float:
    marks = json.loads(marks_path.read_text())
    return (marks["end"] - marks["start"]) / marks["steps"]


def train_py_overrides(data_dir: str, steps: int) -> list[str]:
    """train.py on the CPU over the MNIST in data_dir, seed 42, `steps` optimizer steps, no test."""
    return [
        "trainer=cpu",
        f"data.data_dir={data_dir}",
        "data.download=false",
        "test=false",
        "seed=42",
        f"++trainer.max_steps={steps}",
    ]


def step_timer_overrides(first_step: int, marks_path: Path) -> list[str]:
    """train.py overrides adding a StepTimer that times the run from `first_step` on and writes marks_path."""
    timer = "+callbacks.step_timer"
    return [
        f"{timer}._target_=benchmarks.runs.StepTimer",
        f"{timer}.first_step={first_step}",
        f"{timer}.path={marks_path}",
    ]


def timed_run(overrides: list[str], run_dir: Path) -> float:
    """Runs `python train.py overrides` with its run directory at run_dir; returns its wall time from start to exit."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"train.py {' '.join(overrides)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start
