"""A base for callbacks that hand their epoch-end writing to the background writer (callbacks/background_worker.py).

Results are collected without waiting at every epoch end, and waited for when fit, validate, test or predict ends
(so every file exists when the trainer returns), and when training stops on an error or a signal (so the
files of the epochs before are not lost).
"""

import logging

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from callbacks.background_worker import BackgroundWorker, shared_worker
from user_errors import UserError

log = logging.getLogger(__name__)


class WritesInBackground(Callback):
    @property
    def background(self) -> BackgroundWorker:
        return shared_worker()

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.is_global_zero:  # the helper imports while the stage sets up, not when the first file is due
            self.background.start()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.background.collect()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.background.collect(wait=True)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # trainer.validate; during fit, training goes on meanwhile
            self.background.collect(wait=True)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.background.collect(wait=True)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.background.collect(wait=True)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        try:
            self.background.collect(wait=True)
        except UserError as error:  # the exception that stopped training is the one to report
            log.error(str(error))
