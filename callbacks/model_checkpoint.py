"""Lightning's ModelCheckpoint without two costs that it adds to every training step.

- Lightning names the profiler section of every callback hook after the callback's `state_key`, which
  ModelCheckpoint rebuilds from its settings (the repr of a dict of five) at each call: six hooks a step,
  for each of the three checkpoint callbacks of `callbacks=default`. The settings are fixed once
  `__init__` has checked them, so the key is built there, once. It is the same string as Lightning's
  (the class keeps Lightning's name), so the callbacks' states in checkpoints written before still load.
- `on_train_batch_end` works out its step and time triggers at every step; when neither is set (the
  checkpoints of this project save at epoch ends) it now returns at once.

Measured inside real runs with benchmarks/step_hooks.py (the README's Speed section has the figures).
"""

from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._state_key = super().state_key

    @property
    def state_key(self) -> str:
        return self._state_key

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._every_n_train_steps >= 1 or self._train_time_interval is not None:  # a step or time trigger
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
