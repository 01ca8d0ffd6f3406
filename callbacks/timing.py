"""Per-epoch times, throughput, data wait and peak memory -> timing.csv and time/* (docs/analysis.md): no library
measures the data wait, the gap between training steps, marked with CUDA events on a GPU so that no step waits."""

import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from analysis.prediction_files import write_csv

COLUMNS = ["epoch", "train_s", "val_s", "samples", "samples_per_s", "data_wait_frac", "peak_memory_mb"]


def _seconds(start: Any, end: Any) -> float:
    if isinstance(start, float):
        return end - start
    end.synchronize()
    return start.elapsed_time(end) / 1000


class EpochTiming(Callback):
    _measuring = False

    def __init__(self, filename: str):
        self.path = Path(filename)

    def _mark(self) -> Any:
        if not self._cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._cuda = pl_module.device.type == "cuda"
        self.rows: dict[int, dict[str, Any]] = {}
        if self.path.is_file():  # resumed into its own directory: the rows up to the checkpoint's epoch stay
            from analysis.run_records import read_timing  # only then: a default run's imports stay few

            kept = ((int(epoch), row) for epoch, row in read_timing(self.path.parent).items() if epoch.isdigit())
            rows = {epoch: {**row, "epoch": epoch, "samples": int(row["samples"])} for epoch, row in kept}
            self.rows = {epoch: row for epoch, row in rows.items() if epoch <= trainer.current_epoch}

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._cuda:
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._measuring, self._samples, self._previous_end = True, 0, self._mark()
        self._spans: dict[str, list[tuple[Any, Any]]] = {"train": [], "wait": [], "val": []}  # (start, end) marks

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if not self._measuring:  # resumed mid-epoch, without on_train_epoch_start: the row counts the rest
            self.on_train_epoch_start(trainer, pl_module)
        self._spans["wait"].append((self._previous_end, self._mark()))  # a step's train span starts with its wait

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        end = self._mark()
        self._spans["train"].append((self._previous_end, end))
        self._previous_end, self._samples = end, self._samples + len(batch["image"])

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._measuring:  # within a training epoch (not the sanity check, not eval)
            self._validation_start = self._mark()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._measuring:
            self._previous_end = self._mark()  # the next data wait starts after validation
            self._spans["val"].append((self._validation_start, self._previous_end))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._measuring:  # the end of an epoch replayed on resuming from a checkpoint saved there
            return
        self._measuring = False
        train_s, wait_s, val_s = (sum(_seconds(*span) for span in spans) for spans in self._spans.values())
        val_s = val_s if self._spans["val"] else math.nan
        if self._cuda:
            peak = torch.cuda.max_memory_allocated(pl_module.device)
        else:  # the process's peak resident set so far, in bytes on macOS and KiB on Linux
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        local = torch.tensor(
            [self._samples, train_s, wait_s, val_s, peak], dtype=torch.float64, device=pl_module.device
        )
        # one gather per epoch: all processes' samples and data waits, the slowest one's times, the largest peak
        gathered = pl_module.all_gather(local).reshape(-1, 5).cpu()
        samples, all_train_s, wait_s, _, _ = gathered.sum(0).tolist()
        _, train_s, _, val_s, peak = gathered.amax(0).tolist()
        values = [train_s, val_s, int(samples), _ratio(samples, train_s), _ratio(wait_s, all_train_s), peak / 2**20]
        row = dict(zip(COLUMNS, [trainer.current_epoch, *values]))
        self.rows[row["epoch"]] = row
        metrics = {f"time/{key}": float(value) for key, value in zip(COLUMNS[1:], values) if not math.isnan(value)}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):  # other loggers' metric files stay free of run-to-run noise
                # at the epoch's last step, as Lightning logs epoch means: a resume restarts TensorBoard at the next
                logger.log_metrics(metrics, step=max(trainer.global_step - 1, 0))
        self._write(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.rows:  # the run's row "all" marks it finished (analysis/sweep_table.py)
            self._write(trainer, summary=True)

    def _write(self, trainer: Trainer, summary: bool = False) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        rows = [self.rows[epoch] for epoch in sorted(self.rows)]
        if summary:  # totals; rates over the whole run, so long epochs weigh more
            train_s, samples = sum(row["train_s"] for row in rows), sum(row["samples"] for row in rows)
            val_times = [row["val_s"] for row in rows if not math.isnan(row["val_s"])]
            wait_s = sum(row["data_wait_frac"] * row["train_s"] for row in rows)
            peak = max(row["peak_memory_mb"] for row in rows)
            values = [train_s, sum(val_times) if val_times else math.nan, samples, _ratio(samples, train_s)]
            rows.append(dict(zip(COLUMNS, ["all", *values, _ratio(wait_s, train_s), peak])))
        write_csv(self.path, COLUMNS, ([_format(row[key]) for key in COLUMNS] for row in rows))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _format(value: Any) -> Any:
    return ("" if math.isnan(value) else f"{value:.6g}") if isinstance(value, float) else value
