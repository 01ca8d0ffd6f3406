"""Logs that continue across a resume: no epoch missing, none twice.

- Every checkpoint is preceded by a flush of the loggers, and so is every epoch start (Lightning logs an
  epoch's train/* means after its checkpoint): a kill loses no point that the checkpoint does not redo.
- A resumed run tells TensorBoard that the session restarted at the checkpoint's step (the SessionLog
  START event that SummaryWriter(purge_step=...) writes): TensorBoard then drops the points that the
  interrupted session logged after that checkpoint, which the resumed run logs again.
"""

from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.event_pb2 import Event, SessionLog


class ContinueLogs(Callback):
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.ckpt_path is None or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # Lightning logs the steps of the next batches from global_step on; older points stay
                restart = Event(step=trainer.global_step, session_log=SessionLog(status=SessionLog.START))
                logger.experiment.file_writer.add_event(restart)
                logger.experiment.flush()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._flush(trainer)

    @staticmethod
    def _flush(trainer: Trainer) -> None:
        for logger in trainer.loggers:
            logger.save()
