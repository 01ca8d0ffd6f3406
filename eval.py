"""Evaluate a checkpoint of train.py: python eval.py ckpt_path=PATH [splits=[val,test]] [data.batch_size=...]

The model and data are rebuilt from the config stored in the checkpoint (the `--evaluate` of the
classic ImageNet example); overrides of data.*, model.* and module.* given here apply on top.
Writes metrics.json and, for each split, a per-sample prediction file (predictions/<split>-epochNNN.csv).
"""

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning import LightningModule
from omegaconf import DictConfig, OmegaConf

from callbacks.predictions import PerSamplePredictions
from callbacks.run_config import RUN_CONFIG_KEY
from core.build import build_callbacks, build_datamodule, build_loggers, build_module, build_trainer
from core.checkpoint import load_checkpoint, load_weights
from core.config_check import check_config
from core.errors import UserError, exit_on_user_error
from core.notices import quiet_library_notices
from core.run_dir import register_resolvers
from datamodules.base import ImageDataModule

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


register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    quiet_library_notices()
    with exit_on_user_error():
        evaluate(cfg)


if __name__ == "__main__":
    main()
