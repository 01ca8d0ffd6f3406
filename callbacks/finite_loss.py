"""Stops training when the loss becomes NaN or infinite, before any checkpoint of the diverged state is written.

The loss of every batch is kept (detached, on its device: no copy of the value, no tensor operation) and the
kept losses are tested together, in one operation on their device, every `check_every_n_steps` steps and,
always, before a checkpoint is saved (this callback's
`on_save_checkpoint` runs inside every save, before the file is written). So last.ckpt and the best
checkpoints keep the last state whose losses were all finite, and the error names the first bad batch.
"""

from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

from user_errors import UserError


class StopOnNonFiniteLoss(Callback):
    def __init__(self, check_every_n_steps: int = 50):
        self.check_every_n_steps = check_every_n_steps
        # (loss, epoch, batch index, global step) of the batches not yet looked at: tested together, so that a
        # step waits for no device
        self._unchecked: list[tuple[torch.Tensor, int, int, int]] = []

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:  # training_step skipped the batch
            return
        self._unchecked.append((loss.detach(), trainer.current_epoch, batch_idx, trainer.global_step))
        if len(self._unchecked) >= self.check_every_n_steps:
            self._check(trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check(trainer)  # no need to validate a diverged network

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._check(trainer)

    def _check(self, trainer: Trainer) -> None:
        unchecked, self._unchecked = self._unchecked, []
        finite = _finite([loss for loss, *_ in unchecked]).cpu()
        diverged_here = not bool(finite.all())
        # any(): every DDP process must stop at the same point, whichever saw the bad loss
        if not trainer.strategy.reduce_boolean_decision(diverged_here, all=False):
            return
        if diverged_here:
            _, epoch, batch_idx, step = unchecked[int((~finite).nonzero()[0])]
            where = f"at epoch {epoch}, batch {batch_idx} (global step {step})"
        else:
            where = "in another process"
        kept = "no checkpoint had been saved yet"
        saved = [
            Path(path)
            for callback in trainer.checkpoint_callbacks
            for path in (getattr(callback, "best_model_path", ""), getattr(callback, "last_model_path", ""))
            if path
        ]
        saved = [path for path in saved if path.is_file()]
        if saved:
            kept = f"the last good checkpoint, {max(saved, key=lambda path: path.stat().st_mtime)}, is kept"
        raise UserError(
            f"The training loss became NaN or infinite {where}; training stopped without saving that state and {kept}: "
            "lower optimizer.lr (or use gradient clipping, trainer.gradient_clip_val=1.0) and check the data."
        )


def _finite(losses: list[torch.Tensor]) -> torch.Tensor:
    """Whether each loss is finite everywhere: one operation for scalar losses (automatic optimization
    backpropagates one), one per loss for a manual-optimization step that returns another shape."""
    if all(loss.dim() == 0 for loss in losses):
        return torch.isfinite(torch.stack(losses)) if losses else torch.ones(0, dtype=torch.bool)
    return torch.stack([torch.isfinite(loss).all() for loss in losses])
