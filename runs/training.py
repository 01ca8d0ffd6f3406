"""Training one run from its composed config: fit, then test the best checkpoint (train.py, and each trial of a search)."""

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig

from analysis.run_records import read_scalars
from checkpoints.atomic_io import atomic_write_bytes
from checkpoints.loading import check_resumable, load_checkpoint
from runs.build import (
    build_datamodule,
    build_finder_trainer,
    build_loggers,
    build_module,
    build_trainer,
    build_training_callbacks,
    experiment_record,
    log_hyperparameters,
    log_hyperparameters_at_start,
)
from runs.run_dir import LAST_CHECKPOINT
from runs.tuning import check_finder, find_batch_size, find_lr
from user_errors import UserError, writing

log = logging.getLogger(__name__)

# the final metrics of a finished run, in its run directory (test metrics included when it tested)
FINAL_METRICS_FILE = "metrics.json"


def checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """ckpt_path, or with resume=true this run directory's last.ckpt (runs/run_dir.py chose the directory)."""
    if not cfg.resume:
        return cfg.ckpt_path
    if cfg.ckpt_path:
        raise UserError(
            "Give either resume=true (continue the latest run of this experiment) or ckpt_path=PATH, not both."
        )
    last = Path(cfg.paths.output_dir) / LAST_CHECKPOINT
    if last.is_file():
        log.info(f"Resuming {cfg.paths.output_dir} from {last}")
        return str(last)
    log.info("resume=true: no earlier run of this experiment has a last.ckpt; starting a new run.")
    return None


def best_score(checkpoint_callback: ModelCheckpoint) -> float:
    """The best checkpoint's score. After ddp_spawn (DDP in a multirun) only its path came back from the
    training processes: the score is then read from the checkpoint callback's state stored in that file."""
    if checkpoint_callback.best_model_score is None:
        stored = load_checkpoint(checkpoint_callback.best_model_path)["callbacks"][checkpoint_callback.state_key]
        return float(stored["best_model_score"])
    return checkpoint_callback.best_model_score.item()


def log_global_batch(cfg: DictConfig, trainer: L.Trainer) -> None:
    """The samples behind one optimizer step, and the learning rate, which is used as given: not scaled with the process count."""
    per_node = f" ({trainer.num_devices} per node x {trainer.num_nodes} nodes)" if trainer.num_nodes > 1 else ""
    processes = trainer.world_size
    log.info(
        f"Batch: {cfg.data.batch_size} per process x {processes} processes{per_node} = {cfg.data.batch_size * processes} samples per optimizer step"
    )
    if processes > 1:
        log.info(
            f"Learning rate: optimizer.lr={cfg.optimizer.lr} as given, not scaled with the {processes} processes (for the same training as "
            f"1 process keep the global batch; with data.batch_size per process kept, the linear rule gives optimizer.lr={cfg.optimizer.lr * processes:g})"
        )


def last_logged_epoch_values(loggers: Sequence[Logger]) -> dict[str, float]:
    """The latest value of each train/* and val/* scalar in this run's TensorBoard events (as TensorBoard shows them)."""
    values: dict[str, float] = {}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger) and Path(logger.log_dir).is_dir():
            for tag, events in read_scalars(Path(logger.log_dir)).items():
                if tag.startswith(("train/", "val/")) and tag != "train/lr" and events:
                    values[tag] = max(events, key=lambda event: event.step).value
    return values


def train(cfg: DictConfig, extra_callbacks: Sequence[Callback] = ()) -> dict[str, float]:
    """Fit, then test the best checkpoint; returns the final metrics. `extra_callbacks` join the configured ones
    (a search's pruning callback). The config is checked already (runs/config_check.py)."""
    final = Path(cfg.paths.output_dir) / FINAL_METRICS_FILE
    if cfg.resume and final.is_file():  # training and testing again would log every final row twice
        log.info(
            f"resume=true: the latest run of this experiment, {cfg.paths.output_dir}, has finished ({final} holds its final metrics); nothing to resume."
        )
        try:
            return json.loads(final.read_text())
        except (OSError, ValueError):
            return {}
    ckpt_path = checkpoint_to_resume(cfg)
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    if ckpt_path:  # clear sentences for a wrong file before Lightning loads it (memory-mapped: no tensor read here)
        check_resumable(experiment_record()["choices"], module, load_checkpoint(ckpt_path, mmap=True), ckpt_path)
    if cfg.get("batch_size_find"):  # first: the learning rate that suits a batch depends on its size
        check_finder("batch_size_find", cfg, ckpt_path)
        steps = cfg.batch_size_finder.steps_per_trial
        if find_batch_size(cfg, module, datamodule, build_finder_trainer(cfg, steps), Path(cfg.paths.output_dir)):
            cfg.data.batch_size = (
                datamodule.batch_size
            )  # checkpoints' stored config and the hparams row say what was trained with
    if cfg.get("lr_find"):
        check_finder("lr_find", cfg, ckpt_path)
        steps = cfg.lr_finder.num_training
        find_lr(cfg, module, datamodule, build_finder_trainer(cfg, steps), Path(cfg.paths.output_dir))
        cfg.optimizer.lr = module.lr  # checkpoints' stored config and the hparams row say what was trained with
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, [*build_training_callbacks(cfg), *extra_callbacks], loggers)
    log_global_batch(cfg, trainer)
    log_hyperparameters_at_start(loggers, cfg, module)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {name: value.item() for name, value in trainer.callback_metrics.items()}
    if ckpt_path and not any(name.startswith("val/") for name in metrics):
        # resumed after its last epoch (stopped in the test phase): its final train and val values are those it logged
        metrics = {**last_logged_epoch_values(loggers), **metrics}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if (
        best and trainer.checkpoint_callback.monitor
    ):  # callbacks=none: Lightning's own checkpoint keeps the latest epoch, unscored
        metrics["best_val_top1"] = best_score(trainer.checkpoint_callback)
        log.info(f"Best checkpoint: {best} (val top-1 {metrics['best_val_top1']:.4f})")
    if cfg.test:
        (test_metrics,) = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(test_metrics)
    log_hyperparameters(loggers, cfg, module, final_metrics=metrics)
    if trainer.is_global_zero:  # the run has finished: resume=true of it says so (above)
        with writing(str(final)):
            atomic_write_bytes(json.dumps(metrics, indent=2).encode(), final)
    log.info(f"Output dir: {cfg.paths.output_dir}")
    return metrics
