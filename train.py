"""Train a network: python train.py [model=lenet] [data=mnist] [optimizer=adam] [trainer.max_epochs=5] ...

Everything the run writes (config, checkpoints, TensorBoard events) goes into one run directory.
"""

import logging

import hydra
import lightning as L
from omegaconf import DictConfig

from callbacks.run_config import StoreRunConfig
from core.build import build_callbacks, build_datamodule, build_loggers, build_module, build_trainer, log_hyperparameters
from core.config import to_plain
from core.errors import exit_on_user_error

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; returns the final metrics."""
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, build_callbacks(cfg) + [StoreRunConfig(to_plain(cfg))], loggers)

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    metrics = {name: value.item() for name, value in trainer.callback_metrics.items()}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        metrics["best_val_top1"] = trainer.checkpoint_callback.best_model_score.item()
        log.info(f"Best checkpoint: {best} (val top-1 {metrics['best_val_top1']:.4f})")
    if cfg.test:
        (test_metrics,) = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update(test_metrics)
    log_hyperparameters(loggers, cfg, module, final_metrics=metrics)
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with exit_on_user_error():
        return train(cfg).get("best_val_top1")


if __name__ == "__main__":
    main()
