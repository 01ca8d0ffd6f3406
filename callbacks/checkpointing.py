"""What checkpoints hold: the run's experiment, and never a diverged network."""

import os
from itertools import chain
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

from checkpoints.loading import EXPERIMENT_KEY, RUN_CONFIG_KEY
from user_errors import UserError


class StoreRunConfig(Callback):
    """The experiment (choices from conf/ and overrides) that eval.py and the others rebuild from, and the composed config as a record."""

    def __init__(self, run_config: dict[str, Any], experiment: dict[str, Any]):
        self.run_config, self.experiment = run_config, experiment

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint.update({RUN_CONFIG_KEY: self.run_config, EXPERIMENT_KEY: self.experiment})


class StopOnNonFiniteLoss(Callback):
    """Stops on a NaN/inf training loss before a checkpoint of it, naming the batch: EarlyStopping(check_finite=True)
    looks only at epoch ends, after saving, and exits 0. Losses stay on the device, checked every n steps and at saves."""

    def __init__(self, check_every_n_steps: int = 50):
        self.check_every_n_steps = check_every_n_steps
        self._unchecked: list[tuple[torch.Tensor, int, int, int]] = []  # (loss, epoch, batch, global step)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:  # None: training_step skipped the batch
            self._unchecked.append((loss.detach(), trainer.current_epoch, batch_idx, trainer.global_step))
        if len(self._unchecked) >= self.check_every_n_steps:
            self._check(trainer)

    def _check(self, trainer: Trainer, *_: Any) -> None:
        unchecked, self._unchecked = self._unchecked, []
        finite = torch.stack([torch.isfinite(loss).all() for loss, *_ in unchecked] or [torch.tensor(True)]).tolist()
        bad = [entry for entry, ok in zip(unchecked, finite) if not ok]
        # every DDP process stops at the same point, whichever saw the bad loss
        if not trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            return
        where = "at epoch {1}, batch {2} (global step {3})".format(*bad[0]) if bad else "in another process"
        paths = [(callback.best_model_path, callback.last_model_path) for callback in trainer.checkpoint_callbacks]
        newest = max(filter(os.path.isfile, chain(*paths)), key=os.path.getmtime, default=None)
        kept = f"the last good checkpoint, {newest}, is kept" if newest else "no checkpoint had been saved yet"
        raise UserError(
            f"The training loss became NaN or infinite {where}; training stopped without saving that state and {kept}: "
            "lower optimizer.lr (or use gradient clipping, trainer.gradient_clip_val=1.0) and check the data."
        )

    on_validation_start = on_save_checkpoint = _check
