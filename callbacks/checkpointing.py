"""What checkpoints hold: the run's experiment, and never a diverged network."""

from pathlib import Path
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
        checkpoint[RUN_CONFIG_KEY] = self.run_config
        checkpoint[EXPERIMENT_KEY] = self.experiment


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

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._check(trainer)

    def _check(self, trainer: Trainer) -> None:
        unchecked, self._unchecked = self._unchecked, []
        finite = torch.stack([torch.isfinite(loss).all() for loss, *_ in unchecked]).cpu() if unchecked else None
        diverged_here = finite is not None and not bool(finite.all())
        # every DDP process stops at the same point, whichever saw the bad loss
        if not trainer.strategy.reduce_boolean_decision(diverged_here, all=False):
            return
        where = "in another process"
        if diverged_here:
            _, epoch, batch_idx, step = unchecked[int((~finite).nonzero()[0])]
            where = f"at epoch {epoch}, batch {batch_idx} (global step {step})"
        saved = [
            Path(path)
            for callback in trainer.checkpoint_callbacks
            for path in (callback.best_model_path, callback.last_model_path)
            if path and Path(path).is_file()
        ]
        newest = max(saved, key=lambda path: path.stat().st_mtime, default=None)
        kept = f"the last good checkpoint, {newest}, is kept" if newest else "no checkpoint had been saved yet"
        raise UserError(
            f"The training loss became NaN or infinite {where}; training stopped without saving that state and {kept}: "
            "lower optimizer.lr (or use gradient clipping, trainer.gradient_clip_val=1.0) and check the data."
        )
