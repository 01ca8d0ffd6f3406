"""Per-epoch timing of training: wall times, global throughput, time waiting for data, peak memory.

How the time is measured, without synchronising the device at every step:

- Every training step is bracketed by two marks, one in `on_train_batch_start` (the batch has been
  fetched, moved to the device and normalised) and one in `on_train_batch_end` (forward, backward
  and optimizer step issued). Step time is the sum of end - start; data time is the sum of the gaps
  from one step's end (or the start of the epoch, or the end of a validation run) to the next step's
  start: fetching the next batch, copying and normalising it, plus Lightning's little per-step
  bookkeeping. Training time is their sum, so validation inside an epoch is never counted as training.
- On the CPU a mark is the host clock, which is exact there: every operation finishes before the
  next one starts. On a GPU a mark is a CUDA event recorded on the current stream: it costs a few
  microseconds, never blocks the host, and timestamps the point at which the GPU reaches it, so the
  gaps measure how long the GPU itself was starved of input while the host ran ahead. The events are
  read once, at the end of the epoch, when waiting for them costs nothing.
- Samples are counted per process from the batch shape (host-side, no device access) and summed over
  the DDP processes with one all-gather per epoch, which also takes the slowest process's times and
  the largest peak memory.

Peak memory: `torch.cuda.max_memory_allocated` since the start of the epoch on a GPU; on the CPU the
process's peak resident set size so far (the operating system keeps no per-epoch peak).

Rows go to TensorBoard (`time/*`) and to `<run dir>/timing.csv`, rewritten by process 0 after each
epoch; when training ends a summary row (epoch "all") adds up the times and samples and gives the
overall rates (total samples / total training time, total data time / total training time).
"""

import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

COLUMNS = ["epoch", "train_s", "val_s", "samples", "samples_per_s", "data_wait_frac", "peak_memory_mb"]


class HostClock:
    def mark(self) -> float:
        return time.perf_counter()

    def seconds(self, start: float, end: float) -> float:
        return end - start


class CudaClock:
    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start: torch.cuda.Event, end: torch.cuda.Event) -> float:
        end.synchronize()  # called at the end of the epoch only
        return start.elapsed_time(end) / 1000.0


def peak_memory_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    import resource  # Unix only, and only needed on the CPU

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


class EpochTiming(Callback):
    def __init__(self, filename: str):
        self.path = Path(filename)
        self.rows: dict[int, dict[str, Any]] = {}  # by epoch
        self._clock: HostClock | CudaClock = HostClock()
        self._measuring = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._clock = CudaClock() if pl_module.device.type == "cuda" else HostClock()
        # A run resumed into its own directory keeps the rows up to the checkpoint's epoch: Lightning
        # either trains that epoch again (its row is then replaced) or only replays its end.
        self.rows = {row["epoch"]: row for row in _read_epoch_rows(self.path) if row["epoch"] <= trainer.current_epoch}

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_epoch(pl_module)

    def _start_epoch(self, pl_module: LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._measuring = True
        self._samples = 0
        self._steps: list[tuple[Any, Any]] = []
        self._gaps: list[tuple[Any, Any]] = []
        self._validations: list[tuple[Any, Any]] = []
        self._previous_end = self._clock.mark()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if (
            not self._measuring
        ):  # resumed mid-epoch: Lightning does not call on_train_epoch_start again; the row counts this process's part
            self._start_epoch(pl_module)
        self._step_start = self._clock.mark()
        self._gaps.append((self._previous_end, self._step_start))

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._previous_end = self._clock.mark()
        self._steps.append((self._step_start, self._previous_end))
        self._samples += len(batch["image"])

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if _validating_during_training(trainer):
            self._validation_start = self._clock.mark()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if _validating_during_training(trainer):
            self._previous_end = self._clock.mark()  # the next data gap starts after validation
            self._validations.append((self._validation_start, self._previous_end))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._measuring:  # the end of an epoch replayed on resuming from a checkpoint saved there
            return
        self._measuring = False
        seconds = self._clock.seconds
        step_s = sum(seconds(start, end) for start, end in self._steps)
        wait_s = sum(seconds(start, end) for start, end in self._gaps)
        val_s = sum(seconds(start, end) for start, end in self._validations) if self._validations else math.nan
        local = torch.tensor(
            [self._samples, step_s + wait_s, wait_s, val_s, peak_memory_bytes(pl_module.device)],
            dtype=torch.float64,
            device=pl_module.device,
        )
        samples, train_s, wait_s, val_s, peak = pl_module.all_gather(local).reshape(-1, len(local)).cpu().unbind(dim=1)
        row = {
            "epoch": trainer.current_epoch,
            "train_s": train_s.max().item(),
            "val_s": val_s.max().item(),
            "samples": int(samples.sum().item()),
            "samples_per_s": _ratio(samples.sum().item(), train_s.max().item()),
            "data_wait_frac": _ratio(wait_s.sum().item(), train_s.sum().item()),
            "peak_memory_mb": peak.max().item() / 2**20,
        }
        self.rows[row["epoch"]] = row
        metrics = {
            f"time/{name}": float(value)
            for name, value in row.items()
            if name != "epoch" and not math.isnan(float(value))
        }
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):  # other loggers' metric files stay free of run-to-run noise
                # at the step of the epoch's last batch, as Lightning logs epoch means: a resume from this epoch's
                # checkpoint restarts TensorBoard at the next step, which would otherwise hide these points
                logger.log_metrics(metrics, step=max(trainer.global_step - 1, 0))
        if trainer.is_global_zero and not trainer.fast_dev_run:
            self._write()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and not trainer.fast_dev_run and self.rows:
            self._write(summary=True)

    def _write(self, summary: bool = False) -> None:
        rows = [self.rows[epoch] for epoch in sorted(self.rows)]
        rows += [_summary(rows)] if summary else []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as file:
            writer = csv.DictWriter(file, COLUMNS)
            writer.writeheader()
            writer.writerows({name: _format(value) for name, value in row.items()} for row in rows)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals of times and samples; rates over the whole run (so long epochs weigh more); the largest peak."""
    train_s = sum(row["train_s"] for row in rows)
    samples = sum(row["samples"] for row in rows)
    val_times = [row["val_s"] for row in rows if not math.isnan(row["val_s"])]
    return {
        "epoch": "all",
        "train_s": train_s,
        "val_s": sum(val_times) if val_times else math.nan,
        "samples": samples,
        "samples_per_s": _ratio(samples, train_s),
        "data_wait_frac": _ratio(sum(row["data_wait_frac"] * row["train_s"] for row in rows), train_s),
        "peak_memory_mb": max(row["peak_memory_mb"] for row in rows),
    }


def _validating_during_training(trainer: Trainer) -> bool:
    return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def _read_epoch_rows(path: Path) -> list[dict[str, Any]]:
    """The epoch rows of an existing timing file, as numbers (empty cells are NaN)."""
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["epoch"] != "all"]
    return [
        {name: int(value) if name in ("epoch", "samples") else float(value or "nan") for name, value in row.items()}
        for row in rows
    ]
