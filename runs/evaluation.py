"""Rebuilding a run from its checkpoint (data, model and module from the stored config, the user's overrides on top)
and evaluating it: eval.py, and compare.py, export.py and predict.py, which start from a checkpoint too."""

import json
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning import LightningModule
from omegaconf import DictConfig, OmegaConf

from callbacks.predictions import PerSamplePredictions
from checkpoints.loading import RUN_CONFIG_KEY, load_checkpoint, load_weights
from datamodules.base import ImageDataModule
from runs.build import build_callbacks, build_datamodule, build_loggers, build_module, build_trainer
from runs.config_check import check_config
from user_errors import UserError

log = logging.getLogger(__name__)

# The parts of a run's config that define what the checkpoint's weights mean.
RESTORED_FROM_CHECKPOINT = ("data", "model", "module")


def restore_run_config(cfg: DictConfig, stored: dict, overrides: list[str]) -> DictConfig:
    """`cfg` with its data, model and module taken from the checkpoint, then the user's overrides of them re-applied."""
    restored = cfg.copy()
    for key in RESTORED_FROM_CHECKPOINT:
        restored[key] = stored[key]
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key.split(".")[0] in RESTORED_FROM_CHECKPOINT:
            OmegaConf.update(restored, key, OmegaConf.select(cfg, key), merge=False)
    return restored


def rebuild_from_checkpoint(cfg: DictConfig) -> tuple[DictConfig, dict, ImageDataModule, LightningModule]:
    """The checkpoint at cfg.ckpt_path, the config restored from it, and its datamodule and module with its weights."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg = restore_run_config(cfg, checkpoint[RUN_CONFIG_KEY], list(HydraConfig.get().overrides.task))
    check_config(cfg)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    load_weights(module, checkpoint, cfg.ckpt_path)
    return cfg, checkpoint, datamodule, module


def evaluate(cfg: DictConfig) -> dict[str, float]:
    unknown = sorted(set(cfg.splits) - {"val", "test"})
    if unknown:
        raise UserError(f"splits may name val and test, not {unknown}.")
    cfg, checkpoint, datamodule, module = rebuild_from_checkpoint(cfg)
    trainer = build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))
    for callback in trainer.callbacks:
        if isinstance(callback, PerSamplePredictions):
            callback.weights_from(cfg.ckpt_path, checkpoint["epoch"])

    metrics: dict[str, float] = {}
    for split in cfg.splits:
        run = trainer.validate if split == "val" else trainer.test
        (split_metrics,) = run(module, datamodule=datamodule, verbose=False)
        metrics.update(split_metrics)
        print(
            f" * {split}: top-1 {100 * split_metrics[f'{split}/top1']:.2f}%  top-5 {100 * split_metrics[f'{split}/top5']:.2f}%  "
            f"loss {split_metrics[f'{split}/loss']:.4f}  ({cfg.ckpt_path}, epoch {checkpoint.get('epoch', '?')})"
        )
    Path(cfg.paths.output_dir, "metrics.json").write_text(
        json.dumps({"ckpt_path": str(cfg.ckpt_path), **metrics}, indent=2)
    )
    return metrics
