"""Lightning's Tuner before fitting: batch_size_find=true (Tuner.scale_batch_size) and lr_find=true (Tuner.lr_find),
each recorded in the run directory (batch_size_find.json; lr_find.json and lr_find.png)."""

import json
import logging
import math
import statistics
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning import LightningDataModule, LightningModule
from lightning.pytorch.tuner import Tuner
from matplotlib.figure import Figure
from omegaconf import DictConfig

from user_errors import UserError

log = logging.getLogger(__name__)

LR_FIND_FIGURE, LR_FIND_RECORD = "lr_find.png", "lr_find.json"
BATCH_SIZE_RECORD = "batch_size_find.json"


def lr_given_on_command_line() -> bool:
    """Whether the command line (this job's overrides, in a multirun the sweep's) set optimizer.lr."""
    if not HydraConfig.initialized():
        return False
    return any(
        override.lstrip("+~").split("=", 1)[0] == "optimizer.lr" for override in HydraConfig.get().overrides.task
    )


# setting -> (what it chooses, the override that then trains on several devices)
FINDERS = {
    "lr_find": ("the starting learning rate", "optimizer.lr=<the suggestion>"),
    "batch_size_find": ("the batch size", "data.batch_size=<the one found>"),
}


def check_finder(setting: str, cfg: DictConfig, ckpt_path: str | None) -> None:
    """A finder chooses a setting of a new run, in one process."""
    chooses, then = FINDERS[setting]
    if ckpt_path:
        raise UserError(
            f"{setting}=true chooses {chooses} of a new run: drop it when continuing a run (resume=true or ckpt_path=...)."
        )
    devices, num_nodes = cfg.trainer.get("devices"), cfg.trainer.get("num_nodes") or 1
    if (isinstance(devices, int) and devices > 1) or num_nodes > 1 or devices == -1:
        raise UserError(
            f"{setting}=true runs in one process: run it with trainer.devices=1, then train on several devices with {then}."
        )


def find_batch_size(
    cfg: DictConfig, module: LightningModule, datamodule: LightningDataModule, finder_trainer, out_dir: Path
) -> int | None:
    """Doubles data.batch_size while `steps_per_trial` training steps of it fit in the device's memory (mode power;
    binsearch then searches between the last size that fit and the first that did not) and returns the largest
    that fit; the datamodule keeps it. Run on `finder_trainer`, so none of the run's records sees these steps."""
    options = cfg.batch_size_finder
    initial = datamodule.batch_size
    found = Tuner(finder_trainer).scale_batch_size(
        module,
        datamodule=datamodule,
        mode=options.mode,
        steps_per_trial=options.steps_per_trial,
        init_val=initial,
        max_trials=options.max_trials,
        batch_arg_name="batch_size",
    )
    module.reset_metrics()
    if found is None:  # fast_dev_run: Lightning skips the search
        datamodule.batch_size = initial
        return None
    device = finder_trainer.strategy.root_device.type
    record = {
        "batch_size": found,
        "started_from": initial,
        "mode": options.mode,
        "steps_per_trial": options.steps_per_trial,
        "max_trials": options.max_trials,
        "device": device,
        "training_images": len(datamodule.train_set),
    }
    (out_dir / BATCH_SIZE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    log.info(
        f"Batch-size finder: training with data.batch_size={found} (started from {initial}); {out_dir / BATCH_SIZE_RECORD}"
    )
    if device == "cpu":
        log.warning(
            "Batch-size finder on the CPU: nothing runs out of memory there, so the search only stopped at "
            f"batch_size_finder.max_trials={options.max_trials} doublings or at the training set's size; it is meant for a GPU."
        )
    return found


def find_lr(
    cfg: DictConfig, module: LightningModule, datamodule: LightningDataModule, finder_trainer, out_dir: Path
) -> float | None:
    """Runs the range test on `finder_trainer` (the run's trainer settings, without its callbacks and loggers,
    so no checkpoint, log or timing of the run sees the test's steps) and returns the suggestion.

    The module's weights and optimizer come back as they were (Lightning restores them); the suggestion is set
    as the module's `lr` unless optimizer.lr was given on the command line."""
    options = cfg.lr_finder
    keep_given = lr_given_on_command_line()
    initial_lr = module.lr
    finder = Tuner(finder_trainer).lr_find(
        module,
        datamodule=datamodule,
        min_lr=options.min_lr,
        max_lr=options.max_lr,
        num_training=options.num_training,
        mode=options.mode,
        early_stop_threshold=options.early_stop_threshold,
        update_attr=not keep_given,
        attr_name="lr",
    )
    module.reset_metrics()
    if finder is None:  # fast_dev_run: Lightning skips the test
        return None
    suggestion = finder.suggestion()
    lrs, losses = finder.results["lr"], finder.results["loss"]
    used = initial_lr if keep_given or suggestion is None else suggestion
    record = {
        "suggested_lr": suggestion,
        "used_lr": used,
        "lr_given_on_command_line": keep_given,
        "min_lr_tried": min(lrs) if lrs else None,
        "max_lr_tried": max(lrs) if lrs else None,
        "num_steps": len(lrs),
        "num_steps_asked": options.num_training,
        "mode": options.mode,
        "batch_size": cfg.data.batch_size,
        "optimizer": cfg.optimizer._target_,
        "lrs": lrs,
        "smoothed_losses": losses,
    }
    (out_dir / LR_FIND_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    lr_find_figure(lrs, losses, suggestion, used, options.mode).savefig(out_dir / LR_FIND_FIGURE, dpi=100)
    if suggestion is None:
        log.warning(
            f"Learning-rate finder: no suggestion from {len(lrs)} steps (too few); training with optimizer.lr={used}."
        )
    elif keep_given:
        log.info(
            f"Learning-rate finder suggests {suggestion:.3g}; training with optimizer.lr={used} given on the command line."
        )
    else:
        log.info(f"Learning-rate finder suggests {suggestion:.3g}: training with it (optimizer.lr was {initial_lr}).")
    log.info(f"Learning-rate finder: {out_dir / LR_FIND_FIGURE}, {out_dir / LR_FIND_RECORD}")
    return suggestion


def lr_find_figure(lrs: list[float], losses: list[float], suggestion: float | None, used: float, mode: str) -> Figure:
    """Smoothed training loss against the learning rate (log axis for the exponential range), the suggestion marked."""
    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(lrs, losses, color="C0", linewidth=1.6, label="training loss (smoothed, one batch per LR)")
    if mode == "exponential":
        axes.set_xscale("log")
    if suggestion is not None:
        axes.axvline(suggestion, color="C3", linestyle="--", linewidth=1.2)
        at = min(range(len(lrs)), key=lambda index: abs(lrs[index] - suggestion))
        axes.plot(
            lrs[at], losses[at], "o", color="C3", markersize=8, label=f"suggestion {suggestion:.3g} (steepest descent)"
        )
    if used != suggestion and used is not None and lrs and min(lrs) <= used <= max(lrs):
        axes.axvline(
            used,
            color="0.3",
            linestyle=":",
            linewidth=1.2,
            label=f"trained with {used:.3g} (given on the command line)",
        )
    # the first points are biased low by the smoothing's start and a diverging tail can be huge: the y range spans
    # the points after the first 10 (those Lightning's suggestion skips too), cut at 3x the median's height above the lowest
    finite = [loss for loss in losses[10:] if math.isfinite(loss)]
    if len(finite) >= 2:
        low = min(finite)
        high = (
            min(max(finite), low + 3 * (statistics.median(finite) - low))
            if statistics.median(finite) > low
            else max(finite)
        )
        margin = 0.05 * (high - low) or 0.05 * abs(low) or 0.05
        axes.set_ylim(low - margin, high + margin)
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.set_title(f"Learning-rate range test ({len(lrs)} steps)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="best", fontsize=9)
    return figure
