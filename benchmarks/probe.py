"""A callback that benchmarks add to a train.py run to time it from the inside (not part of any preset).

    python train.py +callbacks.probe._target_=benchmarks.probe.Probe +callbacks.probe.path=marks.json [+callbacks.probe.first_step=K]

It writes `path`, a JSON object of wall-clock marks (seconds since the epoch, comparable with a clock
read by the parent process before it started train.py): when the callback was built (after config
composition, the datamodule and the LightningModule), `setup` (after the Trainer and the datamodule's
setup), `train_start` (after the sanity check and the model summaries), `first_step` (the first training
batch fetched), then `step_K_start` at the start of global step K and `end` when training ends; and
`steps`, the optimizer steps between `step_K_start` and `end`. `exit_at_first_step` ends the process
at the first step, for start-up measurements.
"""

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer


def synchronize(device: torch.device) -> None:
    """Marks are host clocks: wait for queued GPU work so that they time the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Probe(Callback):
    def __init__(self, path: str, first_step: int = 0, exit_at_first_step: bool = False):
        self.path = Path(path)
        self.first_step = first_step
        self.exit_at_first_step = exit_at_first_step
        self.marks: dict[str, float] = {"built": time.time()}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.marks.setdefault("setup", time.time())

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.marks["train_start"] = time.time()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if "first_step" not in self.marks:
            self.marks["first_step"] = time.time()
            if self.exit_at_first_step:
                self._write()
                os._exit(0)  # nothing else to measure: skip training and the interpreter's shutdown
        if trainer.global_step == self.first_step:
            synchronize(pl_module.device)
            self.marks[f"step_{self.first_step}_start"] = time.time()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        synchronize(pl_module.device)
        self.marks["end"] = time.time()
        self.marks["steps"] = trainer.global_step - self.first_step
        if trainer.is_global_zero:  # under DDP, one process writes the file
            self._write()

    def _write(self) -> None:
        self.path.write_text(json.dumps(self.marks))
