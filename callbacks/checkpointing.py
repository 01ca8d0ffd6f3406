"""What every checkpoint holds and when last.ckpt is written.

Stores in every checkpoint the run's experiment (its choices from conf/ and its overrides), from which
eval.py and the others rebuild its model and data with this installation's conf/, and the composed config,
as a record for people and reports (never built from).

last.ckpt: the complete training state, rewritten at the end of every epoch; what resume=true and ckpt_path continue from.

ModelCheckpoint(save_last=True) rewrites last.ckpt only in a step where that same callback saved one of
its own checkpoints (Lightning 2.6), so beside a best-k checkpoint it lags behind whenever the metric
does not improve. This is a ModelCheckpoint of its own class, so that its state has its own key beside
the other ModelCheckpoints'.
"""

from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from checkpoints.loading import EXPERIMENT_KEY, RUN_CONFIG_KEY


class StoreRunConfig(Callback):
    def __init__(self, run_config: dict[str, Any], experiment: dict[str, Any]):
        self.run_config, self.experiment = run_config, experiment

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUN_CONFIG_KEY] = self.run_config
        checkpoint[EXPERIMENT_KEY] = self.experiment


LAST = "last"


class LastCheckpoint(ModelCheckpoint):
    def __init__(self, dirpath: str):
        super().__init__(
            dirpath=dirpath,
            filename=LAST,
            save_top_k=1,
            every_n_epochs=1,
            # after validation and the other checkpoints of the epoch: last.ckpt is the last file written
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
