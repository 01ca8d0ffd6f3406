"""A callback that makes a train.py run fail at the start of a chosen epoch (tests add it with +callbacks.fail=...)."""

from lightning import Callback, LightningModule, Trainer

from core.errors import UserError


class FailAtEpoch(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise UserError(f"Stopped on purpose at the start of epoch {self.epoch}.")
