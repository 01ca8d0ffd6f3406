"""What makes a resumed run continue as if it had never stopped.

What Lightning does not restore on resume: the global random generators and the training loader's place in its epoch.

Lightning restores the weights, optimizer, schedulers and loops. Without the random generators (torch,
CUDA, numpy, python) a resumed run would draw other dropout masks and augmentations than an uninterrupted
one; without the loader's position a run resumed mid-epoch would start that epoch's batches over.
(Lightning can save a loader's state itself, but it never restores it when configure_optimizers has
asked for `trainer.estimated_stepping_batches`, as ours does: that sets the loader up before the
checkpoint is read.) Everything is kept as tensors and plain numbers, so checkpoints still load with
torch.load(weights_only=True).

Logs that continue across a resume: no epoch missing, none twice.

- Lightning writes each logging call to disk at once (it saves the loggers after every log_metrics), and
  every checkpoint is preceded by a flush of the loggers too. One record still follows the checkpoint
  that marks an epoch done: the epoch's train/* means, which Lightning logs after every callback's
  on_train_epoch_end, where last.ckpt is written. A kill between the two would lose them for good (the
  resumed run starts at the next epoch), so they go into that checkpoint (this callback's state) and a
  resumed run writes them to each logger that lacks them.
- A resumed run tells TensorBoard that the session restarted at the checkpoint's step (the SessionLog
  START event that SummaryWriter(purge_step=...) writes): TensorBoard then drops the points that the
  interrupted session logged after that checkpoint, which the resumed run logs again. From a CSV file
  (ContinuingCSVLogger: Lightning's CSVLogger deletes an existing metrics.csv) those rows are removed.
"""

import csv
import io
import logging
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from tensorboard.compat.proto.event_pb2 import Event, SessionLog

from analysis.run_records import read_scalars
from checkpoints.atomic_io import atomic_write_bytes
from datamodules.resumable_loader import ResumableDataLoader

log = logging.getLogger(__name__)


def capture_rng_states() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": position,
            "has_gauss": has_gauss,
            "cached_gaussian": cached_gaussian,
        },
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss_next"]))
    cuda_states = states.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


class ExactResume(Callback):
    """Saves each process's generator states and the training loader's position with every checkpoint;
    applies them when training (re)starts.

    They are applied in `on_train_start`, not when the checkpoint is read: Lightning draws random numbers
    in between (e.g. tracing the TensorBoard graph through dropout), which the uninterrupted run drew
    before its first epoch, not at this point; and the loader exists by then but has not started its epoch.
    """

    def __init__(self) -> None:
        self._trainer: Trainer | None = None
        self._to_restore: dict[str, Any] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _train_loader(self) -> ResumableDataLoader | None:
        loader = self._trainer.train_dataloader if self._trainer is not None else None
        return loader if isinstance(loader, ResumableDataLoader) else None

    def state_dict(self) -> dict[str, Any]:
        states = capture_rng_states()
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if (
            distributed and torch.distributed.get_world_size() > 1
        ):  # one entry per process: each rank resumes its own streams
            per_rank: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(per_rank, states)
        else:
            per_rank = [states]
        loader = self._train_loader()
        return {"rng_per_rank": per_rank, "train_loader": loader.position() if loader is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._to_restore is None:
            return
        state, self._to_restore = self._to_restore, None
        per_rank = state["rng_per_rank"]
        if len(per_rank) != trainer.world_size:
            log.warning(
                f"The checkpoint holds random states of {len(per_rank)} processes, this run has {trainer.world_size}: each process resumes with those of process 0."
            )
        restore_rng_states(per_rank[trainer.global_rank] if len(per_rank) == trainer.world_size else per_rank[0])
        loader = self._train_loader()
        if loader is not None and state["train_loader"] is not None:
            loader.resume_from(state["train_loader"])


# the epoch means the module logs at an epoch's end (lightning_modules/classifier.py), after last.ckpt is written;
# the learning rate (LearningRateMonitor, also in callback_metrics) is logged at its own steps, before
EPOCH_END_PREFIX = "train/"
LEARNING_RATE = "train/lr"


class ContinuingCSVLogger(CSVLogger):
    """CSVLogger whose metrics.csv goes on across a resume instead of starting over.

    Lightning's writer deletes an existing metrics.csv when it is created and offers no option to keep it:
    the file's content is put back right after, and the writer told its columns (its public `metrics_keys`),
    so that it appends below the earlier rows.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._writer_created = False

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._writer_created:
            return super().experiment
        metrics_file = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        earlier = metrics_file.read_bytes() if metrics_file.is_file() else None
        with warnings.catch_warnings():  # its warning that earlier files "will be deleted": this logger keeps them
            warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
            writer = super().experiment
        self._writer_created = True
        if earlier is not None:
            atomic_write_bytes(earlier, metrics_file)
            writer.metrics_keys = list(csv.DictReader(io.StringIO(earlier.decode())).fieldnames or [])
        return writer


def _drop_rows_from(metrics_file: Path, step: int) -> None:
    with metrics_file.open(newline="") as file:
        reader = csv.DictReader(file)
        kept = [row for row in reader if row.get("step") in (None, "") or int(float(row["step"])) < step]
        columns = reader.fieldnames or []
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    atomic_write_bytes(text.getvalue().encode(), metrics_file)


def _csv_has_row(metrics_file: Path, step: int, metrics: dict[str, float]) -> bool:
    with metrics_file.open(newline="") as file:
        rows = list(csv.DictReader(file))
    return any(
        row.get("step") not in (None, "") and int(float(row["step"])) == step and all(row.get(key) for key in metrics)
        for row in rows
    )


def _tensorboard_steps(log_dir: Path, tags: list[str]) -> dict[str, set[int]]:
    """tag -> the steps TensorBoard shows for it in log_dir."""
    scalars = read_scalars(log_dir, set(tags))
    return {tag: {event.step for event in scalars.get(tag, [])} for tag in tags}


def _inside(folder: str, run_dir: Path) -> bool:
    return Path(folder).resolve().is_relative_to(run_dir)


class ContinueLogs(Callback):
    def __init__(self) -> None:
        self._trainer: Trainer | None = None
        self._at_epoch_end = False
        self._epoch_end_row: dict[str, Any] | None = None  # from the checkpoint being resumed

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._at_epoch_end = True  # the checkpoints written from here to the next epoch mark this epoch done

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._at_epoch_end = False

    def state_dict(self) -> dict[str, Any]:
        """The epoch's train/* means when the checkpoint is written at its end (Lightning logs them after it)."""
        trainer = self._trainer
        if trainer is None or not self._at_epoch_end:
            return {"epoch_end_row": None}
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith(EPOCH_END_PREFIX) and name != LEARNING_RATE
        }
        # Lightning logs an epoch's means at the step of its last batch, one below the global step the epoch ended at
        return {
            "epoch_end_row": {"epoch": trainer.current_epoch, "step": trainer.global_step - 1, "metrics": metrics}
            if metrics
            else None
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._epoch_end_row = state_dict.get("epoch_end_row")

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # here, not only in on_train_start, which Lightning skips when the checkpoint ends the training (killed after the last epoch)
        self._complete_logs(trainer)

    def _complete_logs(self, trainer: Trainer) -> None:
        """The epoch-end row of the checkpoint, to each logger of its own run directory that lacks it."""
        row, self._epoch_end_row = self._epoch_end_row, None
        if row is None or trainer.ckpt_path is None or not trainer.is_global_zero:
            return
        # the checkpoint's own run directory (resume=true): its logs are completed; a new directory starts after the checkpoint
        checkpoint_run_dir = Path(trainer.ckpt_path).resolve().parent.parent
        for logger in trainer.loggers:
            if not _inside(logger.log_dir, checkpoint_run_dir):
                continue
            if isinstance(logger, TensorBoardLogger):
                steps = _tensorboard_steps(Path(logger.log_dir), list(row["metrics"]))
                missing = any(row["step"] not in logged for logged in steps.values())
            elif isinstance(logger, CSVLogger):
                metrics_file = Path(logger.experiment.metrics_file_path)
                missing = metrics_file.is_file() and not _csv_has_row(metrics_file, row["step"], row["metrics"])
            else:
                missing = False
            if missing:
                self._write_row(logger, row)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._complete_logs(
            trainer
        )  # strategies that restore the callbacks after on_fit_start (restore_checkpoint_after_setup)
        if trainer.ckpt_path is None or not trainer.is_global_zero:
            return
        # Lightning logs the steps of the next batches from global_step on; older points stay
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                restart = Event(step=trainer.global_step, session_log=SessionLog(status=SessionLog.START))
                logger.experiment.file_writer.add_event(restart)
                logger.experiment.flush()
            elif isinstance(logger, CSVLogger) and Path(logger.experiment.metrics_file_path).is_file():
                _drop_rows_from(Path(logger.experiment.metrics_file_path), trainer.global_step)

    @staticmethod
    def _write_row(logger: Logger, row: dict[str, Any]) -> None:
        logger.log_metrics({**row["metrics"], "epoch": row["epoch"]}, step=row["step"])
        logger.save()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._flush(trainer)

    @staticmethod
    def _flush(trainer: Trainer) -> None:
        for logger in trainer.loggers:
            logger.save()
