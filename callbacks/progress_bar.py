"""Lightning's TQDM progress bar, showing the latest per-step training values without a device sync per step.

Lightning turns every value logged with `prog_bar=True` into a Python number after every training batch
(`.item()` in its logger connector), including values logged many steps before: on a GPU that makes the host
wait for the device at every step. The module therefore logs its per-step values (`train_step/*`, every
`trainer.log_every_n_steps` steps) without `prog_bar`, and this bar reads the latest of them from
`trainer.callback_metrics` when it is redrawn, every `refresh_rate` batches. It draws the training bar once per
update, with the count and the values together (Lightning's draws it twice: the count, then the values).
"""

from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar as LightningTQDMProgressBar
from torch import Tensor


class TQDMProgressBar(LightningTQDMProgressBar):
    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False, show_prefix: str = "train_step/"):
        """show_prefix: logged values whose names start with it are shown too, as of the last redraw."""
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self.show_prefix = show_prefix

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        shown = {name: value.item() if isinstance(value, Tensor) else value for name, value in trainer.callback_metrics.items() if name.startswith(self.show_prefix)}
        return {**shown, **super().get_metrics(trainer, pl_module)}

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        bar, done = self.train_progress_bar, batch_idx + 1
        if bar is not None and self._should_update(done, bar.total):
            bar.n = done
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # draws the bar
