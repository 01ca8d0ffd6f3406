"""Ctrl-C and SIGTERM (what job schedulers send) stop training at the end of the current batch, or of the epoch if they
came during validation, after saving the whole state to `<dirpath>/<filename>.ckpt` for resume=true; a second one stops
at once, without saving. Lightning's own SIGTERM stop saves nothing and breaks off validation, and Ctrl-C raises
KeyboardInterrupt wherever it lands, possibly half-way through an optimizer step. Under DDP the processes agree on
stopping with a collective, which waits for the devices, every `check_every_n_steps` steps; one process looks at its
flag after every batch."""

import logging
import signal
import threading
from types import FrameType
from typing import Any

from lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """Training stopped on a signal after saving a checkpoint; the message says how to resume."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class StopOnSignal(Callback):
    def __init__(self, dirpath: str, filename: str = "last", check_every_n_steps: int = 50):
        self.path, self.check_every_n_steps = f"{dirpath}/{filename}.ckpt", check_every_n_steps
        self.received: int | None = None
        self._stop_after_epoch: int | None = None
        self._previous_handlers: dict[int, Any] = {}

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.received, self._stop_after_epoch = None, None
        self._install()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install()  # again: Lightning registers its own SIGTERM handler after on_fit_start

    def _install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers.setdefault(signum, signal.signal(signum, self._on_signal))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            self._restore_handlers()
            raise KeyboardInterrupt(f"second signal ({signal.Signals(signum).name}): stopping without saving")
        self.received = signum
        log.warning(
            f"Received {signal.Signals(signum).name}: training stops after this batch (under DDP at the next step that is a multiple of "
            f"{self.check_every_n_steps}) with a checkpoint to resume from (send it again to stop at once, without saving)."
        )

    def _restore_handlers(self, *_: Any, **__: Any) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    on_exception = teardown = _restore_handlers  # the handlers from before fit, after it

    def _signalled(self, trainer: Trainer) -> bool:
        return trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if (trainer.world_size == 1 or trainer.global_step % self.check_every_n_steps == 0) and self._signalled(
            trainer
        ):
            self._stop(trainer, f"after batch {batch_idx + 1} of epoch {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._signalled(trainer):  # during validation: stop after Lightning logs the epoch's train/* values
            trainer.should_stop, self._stop_after_epoch = True, trainer.current_epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._stop_after_epoch is not None:
            self._stop(trainer, f"at the end of epoch {self._stop_after_epoch}")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._signalled(trainer):  # after the last epoch's end: stop before testing
            self._stop(trainer, "after the last epoch, before testing")

    def _stop(self, trainer: Trainer, where: str) -> None:
        signum = self.received or signal.SIGTERM
        trainer.save_checkpoint(self.path)
        self._restore_handlers()
        raise TrainingStopped(
            signum,
            f"training stopped by {signal.Signals(signum).name} {where} (global step {trainer.global_step}); "
            f"its state is saved in {self.path}: run the same command with resume=true to continue.",
        )
