"""Lightning's Tuner before fitting (batch_size_find=true, lr_find=true); ours only the records the docs promise."""

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runs.build import build_trainer
from runs.config_check import several_processes
from user_errors import UserError

log = logging.getLogger(__name__)

# setting -> (what it chooses, the override that then trains on several devices)
FINDERS = {
    "batch_size_find": ("the batch size", "data.batch_size=<the one found>"),
    "lr_find": ("the starting learning rate", "optimizer.lr=<the suggestion>"),
}


def tune(cfg: DictConfig, module: Any, datamodule: Any, ckpt_path: str | None) -> None:
    """The finders asked for, the batch size first (the learning rate that suits a batch depends on its size)."""
    for setting, (chooses, then) in FINDERS.items():  # a finder chooses a setting of a new run, in one process
        if cfg.get(setting) and ckpt_path:
            raise UserError(
                f"{setting}=true chooses {chooses} of a new run: drop it when continuing a run (resume=true or ckpt_path=...)."
            )
        if cfg.get(setting) and several_processes(cfg.trainer):
            raise UserError(
                f"{setting}=true runs in one process: run it with trainer.devices=1, then train on several devices with {then}."
            )
    if cfg.get("batch_size_find"):
        find_batch_size(cfg, module, datamodule, finder_trainer(cfg, cfg.batch_size_finder.steps_per_trial))
    if cfg.get("lr_find"):
        find_lr(cfg, module, datamodule, finder_trainer(cfg, cfg.lr_finder.num_training))


def finder_trainer(cfg: DictConfig, steps: int) -> Any:
    """The run's trainer without callbacks or loggers (the run's records never see a finder's steps), with a finite
    length that `steps` ends first (schedulers may need one)."""
    options = {"max_epochs": steps, "max_steps": steps, "min_epochs": None, "num_sanity_val_steps": 0}
    options |= {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    return build_trainer(cfg, [], [], **options)


def find_batch_size(cfg: DictConfig, module: Any, datamodule: Any, trainer: Any) -> None:
    """Tuner.scale_batch_size; the stored config and the hparams row then say what was trained."""
    from lightning.pytorch.tuner import Tuner

    options, initial = cfg.batch_size_finder, datamodule.batch_size
    found = Tuner(trainer).scale_batch_size(module, datamodule=datamodule, init_val=initial, **options)
    module.reset_metrics()
    if found is None:  # fast_dev_run: Lightning skips the search
        return
    cfg.data.batch_size = found
    device = trainer.strategy.root_device.type
    record = {"batch_size": found, "started_from": initial, "device": device, **OmegaConf.to_container(options)}
    Path(cfg.paths.output_dir, "batch_size_find.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info(f"Batch-size finder: training with data.batch_size={found} (started from {initial}); batch_size_find.json")
    if device == "cpu":
        log.warning(
            "Batch-size finder on the CPU: nothing runs out of memory there, so the search only stopped at "
            f"batch_size_finder.max_trials={options.max_trials} doublings or at the training set's size."
        )


def find_lr(cfg: DictConfig, module: Any, datamodule: Any, trainer: Any) -> None:
    """Tuner.lr_find; the module trains with its suggestion unless optimizer.lr is on the command line."""
    from lightning.pytorch.tuner import Tuner
    from matplotlib.figure import Figure

    from runs.build import command_line_keys

    given = "optimizer.lr" in command_line_keys()
    finder = Tuner(trainer).lr_find(
        module, datamodule=datamodule, update_attr=not given, attr_name="lr", **cfg.lr_finder
    )
    module.reset_metrics()
    cfg.optimizer.lr = module.lr
    if finder is None:  # fast_dev_run: Lightning skips the test
        return
    suggestion, lrs, out_dir = finder.suggestion(), finder.results["lr"], Path(cfg.paths.output_dir)
    record = {
        "suggested_lr": suggestion,
        "used_lr": module.lr,
        "lr_given_on_command_line": given,
        "min_lr_tried": min(lrs, default=None),
        "max_lr_tried": max(lrs, default=None),
        "num_steps": len(lrs),
        "batch_size": datamodule.batch_size,
        "lrs": lrs,
        "smoothed_losses": finder.results["loss"],
    }
    (out_dir / "lr_find.json").write_text(json.dumps(record, indent=2) + "\n")
    figure = Figure()
    finder.plot(suggest=True, ax=figure.add_subplot())
    figure.savefig(out_dir / "lr_find.png", dpi=100)
    log.info(
        f"Learning-rate finder suggests {suggestion} (lr_find.png, lr_find.json); training with optimizer.lr="
        f"{module.lr}{' given on the command line' if given else ''}."
    )
