"""Stores the run's composed config in every checkpoint, so a checkpoint alone rebuilds its model and data."""

from typing import Any

from lightning import Callback, LightningModule, Trainer

from checkpoints.loading import RUN_CONFIG_KEY


class StoreRunConfig(Callback):
    def __init__(self, run_config: dict[str, Any]):
        self.run_config = run_config

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUN_CONFIG_KEY] = self.run_config
