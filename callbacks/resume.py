"""What a resume needs beyond Lightning's restore (random generators, the loader's place, logs that go on), and a stop
on a signal with a checkpoint; stored as tensors and plain numbers, so checkpoints load with weights_only=True."""

import csv
import io
import logging
import random
import signal
import threading
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from tensorboard.compat.proto.event_pb2 import Event, SessionLog

from checkpoints.loading import atomic_write_bytes
from user_errors import UserError

log = logging.getLogger(__name__)


class ExactResume(Callback):
    """Lightning saves no global generator states, draws random numbers before training starts (the TensorBoard graph)
    and skips the loader's place once configure_optimizers reads estimated_stepping_batches (Lightning #20550)."""

    _rng_per_rank: list[Any] = []  # only ever replaced, never changed in place
    _loader_states: list[Any] = []

    def state_dict(self) -> dict[str, Any]:
        kind, keys, *rest = np.random.get_state()
        numpy = (kind, torch.from_numpy(keys.astype(np.int64)), *rest)
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        states = {"torch": torch.get_rng_state(), "numpy": numpy, "python": random.getstate(), "cuda": cuda}
        per_rank = [states]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            per_rank = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(per_rank, states)
        return {"rng_per_rank": per_rank}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # before the StatefulDataLoader: neither the loader's place nor these states fit
        if "train_loader" in state_dict:
            raise UserError(
                "The checkpoint was written by an earlier version of train.py, whose loader and random-generator states this version cannot continue exactly: finish that run with the version that wrote it, or start a new run."
            )
        self._rng_per_rank = state_dict["rng_per_rank"]

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._loader_states = (
            checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader", [])
        )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        per_rank, self._rng_per_rank = self._rng_per_rank, []
        if per_rank:  # saved by another number of processes: each resumes with process 0's
            states = per_rank[trainer.global_rank] if len(per_rank) == trainer.world_size else per_rank[0]
            torch.set_rng_state(states["torch"])
            kind, keys, *rest = states["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
            random.setstate(states["python"])
            if states["cuda"] and len(states["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states["cuda"])
        if self._loader_states and hasattr(trainer.train_dataloader, "load_state_dict"):
            trainer.train_dataloader.load_state_dict(self._loader_states[0])  # read at its first batch, after this
        self._loader_states = []


class ContinuingCSVLogger(CSVLogger):
    """Lightning's CSVLogger deletes an existing metrics.csv: put back, with its columns, for a resumed run to append to."""

    _kept = False  # our own flag, not Lightning's private writer attribute

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._kept:
            return super().experiment
        metrics_file = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        earlier = metrics_file.read_bytes() if metrics_file.is_file() else None
        with warnings.catch_warnings():  # that earlier files "will be deleted": they are kept
            warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
            writer = super().experiment
        self._kept = True
        if earlier is not None:
            atomic_write_bytes(earlier, metrics_file)
            writer.metrics_keys = list(csv.DictReader(io.StringIO(earlier.decode())).fieldnames or [])
        return writer


class ContinueLogs(Callback):
    """Logs that go on across a resume, each epoch once: the points an interrupted session logged after its checkpoint
    dropped (TensorBoard's purge event, metrics.csv's rows), every logger flushed before each checkpoint."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.ckpt_path is None or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:  # Lightning logs the next batches from global_step on
            if isinstance(logger, TensorBoardLogger):
                restart = Event(step=trainer.global_step, session_log=SessionLog(status=SessionLog.START))
                logger.experiment.file_writer.add_event(restart)
                logger.experiment.flush()
            elif isinstance(logger, CSVLogger) and Path(logger.experiment.metrics_file_path).is_file():
                path, text = Path(logger.experiment.metrics_file_path), io.StringIO()
                with path.open(newline="") as file:
                    rows = csv.DictReader(file)
                    writer = csv.DictWriter(text, fieldnames=rows.fieldnames or [], lineterminator="\n")
                    writer.writeheader()
                    writer.writerows(row for row in rows if float(row["step"]) < trainer.global_step)
                atomic_write_bytes(text.getvalue().encode(), path)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            logger.save()


class TrainingStopped(Exception):
    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class StopOnSignal(Callback):
    """Ctrl-C and SIGTERM stop after the batch (or epoch, in validation) with `<dirpath>/<filename>.ckpt`, a second at once:
    Lightning's SIGTERM stop saves nothing, and KeyboardInterrupt may land mid-step. DDP agrees every n steps."""

    def __init__(self, dirpath: str, filename: str = "last", check_every_n_steps: int = 50):
        self.path, self.check_every_n_steps = f"{dirpath}/{filename}.ckpt", check_every_n_steps
        self.received: int | None = None
        self._stop_after_epoch: int | None = None
        self._previous_handlers: dict[int, Any] = {}

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.received, self._stop_after_epoch = None, None
        self.on_train_start(trainer, pl_module)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # at fit start, and again here: Lightning registers its own SIGTERM handler after on_fit_start
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
        if trainer.world_size == 1 or trainer.global_step % self.check_every_n_steps == 0:
            if self._signalled(trainer):
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
        trainer.save_checkpoint(self.path)  # on_exception then restores the handlers
        raise TrainingStopped(
            signum,
            f"training stopped by {signal.Signals(signum).name} {where} (global step {trainer.global_step}); "
            f"its state is saved in {self.path}: run the same command with resume=true to continue.",
        )
