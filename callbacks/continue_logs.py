"""Logs that continue across a resume: no epoch missing, none twice.

- Every checkpoint is preceded by a flush of the loggers, and so is every epoch start (Lightning logs an
  epoch's train/* means after its checkpoint): a kill loses no point that the checkpoint does not redo.
- A resumed run tells TensorBoard that the session restarted at the checkpoint's step (the SessionLog
  START event that SummaryWriter(purge_step=...) writes): TensorBoard then drops the points that the
  interrupted session logged after that checkpoint, which the resumed run logs again. From a CSV file
  (ContinuingCSVLogger: Lightning's CSVLogger deletes an existing metrics.csv) those rows are removed.
"""

import csv
import io
from pathlib import Path
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from tensorboard.compat.proto.event_pb2 import Event, SessionLog

from core.checkpoint_io import atomic_write_bytes


class _AppendingWriter(ExperimentWriter):
    """Keeps an existing metrics.csv and its columns (Lightning's writer deletes it)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class ContinuingCSVLogger(CSVLogger):
    """CSVLogger whose metrics.csv goes on across a resume instead of starting over."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def _drop_rows_from(metrics_file: Path, step: int) -> None:
    with metrics_file.open(newline="") as file:
        reader = csv.DictReader(file)
        kept = [row for row in reader if row.get("step") in (None, "") or int(float(row["step"])) < step]
        columns = reader.fieldnames or []
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    atomic_write_bytes(text.getvalue().encode(), metrics_file)


class ContinueLogs(Callback):
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.ckpt_path is None or not trainer.is_global_zero:
            return
        # Lightning logs the steps of the next batches from global_step on; older points stay
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                restart = Event(step=trainer.global_step, session_log=SessionLog(status=SessionLog.START))
                logger.experiment.file_writer.add_event(restart)
                logger.experiment.flush()
            elif isinstance(logger, CSVLogger) and Path(logger.experiment.metrics_file_path).is_file():
                _drop_rows_from(Path(logger.experiment.metrics_file_path), trainer.global_step)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._flush(trainer)

    @staticmethod
    def _flush(trainer: Trainer) -> None:
        for logger in trainer.loggers:
            logger.save()
