"""Ctrl-C (SIGINT) and SIGTERM (what job schedulers send before they kill a job) end training cleanly, with a checkpoint to resume from.

Lightning on its own turns SIGINT into a KeyboardInterrupt wherever it lands (possibly half-way through an
optimizer step) and, on SIGTERM, stops without saving. Here a signal only sets a flag; training stops at
the end of the current batch, or of the current epoch if the signal came during validation, after
saving the complete state to `<dirpath>/<filename>.ckpt` (last.ckpt by default, which `resume=true`
picks up). A second signal stops at once, without saving.

Under DDP every process must stop at the same batch, whichever of them got the signal, so they agree on it
with a collective operation, which waits for the devices. They do so every `check_every_n_steps` steps
instead of after every batch (a signal then stops training up to that many steps later); a single process
looks at its flag after every batch, at no cost.
"""

import logging
import signal
import threading
from types import FrameType
from typing import Any

from lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(Exception):
    """Training ended early on a signal, after saving a checkpoint to resume from; the message says how."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class StopOnSignal(Callback):
    def __init__(self, dirpath: str, filename: str = "last", check_every_n_steps: int = 50):
        self.path = f"{dirpath}/{filename}.ckpt"
        self.check_every_n_steps = check_every_n_steps
        self.received: int | None = None
        self._stopping_after_epoch: int | None = None
        self._previous_handlers: dict[int, Any] = {}

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.received = None
        self._stopping_after_epoch = None
        self._install()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Again: Lightning registered its own SIGTERM handler after on_fit_start (it stops without
        # saving, with exit code 0); during the training loop only this one runs.
        self._install()

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in HANDLED_SIGNALS:
            previous = signal.signal(signum, self._on_signal)
            self._previous_handlers.setdefault(signum, previous)  # the handlers from before fit, restored after it

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            self._restore_handlers()
            raise KeyboardInterrupt(f"second signal ({signal.Signals(signum).name}): stopping without saving")
        self.received = signum
        log.warning(
            f"Received {signal.Signals(signum).name}: training stops after this batch (under DDP at the next step that is a multiple of "
            f"{self.check_every_n_steps}) with a checkpoint to resume from (send it again to stop at once, without saving)."
        )

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.world_size > 1 and trainer.global_step % self.check_every_n_steps:
            return
        if self._any_process_signalled(trainer):
            self._stop(trainer, f"after batch {batch_idx + 1} of epoch {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A signal during the epoch's validation: let Lightning finish the epoch (the module logs its train/*
        # values after the callbacks' hooks) and stop there; the checkpoint is written in on_train_end.
        if self._any_process_signalled(trainer):
            trainer.should_stop = True
            self._stopping_after_epoch = trainer.current_epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._stopping_after_epoch is not None:
            self._stop(trainer, f"at the end of epoch {self._stopping_after_epoch}")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._any_process_signalled(trainer):  # came after the last epoch's end: stop before testing
            self._stop(trainer, "after the last epoch, before testing")

    def _any_process_signalled(self, trainer: Trainer) -> bool:
        return trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)

    def _stop(self, trainer: Trainer, where: str) -> None:
        signum = self.received if self.received is not None else signal.SIGTERM
        trainer.save_checkpoint(self.path)
        self._restore_handlers()
        raise TrainingStopped(
            signum,
            f"training stopped by {signal.Signals(signum).name} {where} (global step {trainer.global_step}); "
            f"its state is saved in {self.path}: run the same command with resume=true to continue.",
        )

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore_handlers()
