"""Building the DataModule, LightningModule, callbacks, loggers and Trainer from a composed config."""

import logging
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig

from core.config import flatten, to_plain
from core.errors import UserError
from datamodules.base import ImageDataModule

log = logging.getLogger(__name__)


def _instantiate(node: DictConfig, what: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with a failure turned into one sentence that names the config group."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        reason = f"{cause.__class__.__name__}: {cause}" if cause else str(error)
        raise UserError(f"Could not build the {what} from its config ({' '.join(reason.split())}); check the {what}.* options, `--cfg job` prints them.") from error


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    log.info(f"Data: {cfg.data._target_}")
    return _instantiate(cfg.data, "data")


def build_module(cfg: DictConfig, datamodule: ImageDataModule) -> LightningModule:
    """The LightningModule, its network shaped by the datamodule (channels, image size, classes)."""
    log.info(f"Model: {cfg.model._target_} for input {tuple(datamodule.input_shape)} and {datamodule.num_classes} classes")
    return _instantiate(
        cfg.module,
        "model",
        _recursive_=False,  # the module instantiates its network and optimizer itself
        _convert_="all",  # plain dicts, so that its saved hyperparameters load with weights_only
        net=cfg.model,
        optimizer=cfg.optimizer,
        scheduler=cfg.scheduler,
        input_shape=list(datamodule.input_shape),
        num_classes=datamodule.num_classes,
    )


def _instantiate_each(group: DictConfig | None, what: str) -> list[Any]:
    return [_instantiate(node, f"{what}.{name}") for name, node in (group or {}).items() if node and "_target_" in node]


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    return _instantiate_each(cfg.get("callbacks"), "callbacks")


def build_loggers(cfg: DictConfig) -> list[Logger]:
    return _instantiate_each(cfg.get("logger"), "logger")


def build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]) -> Trainer:
    return _instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)


def log_hyperparameters(loggers: list[Logger], cfg: DictConfig, module: LightningModule, final_metrics: dict[str, float]) -> None:
    """What was chosen (config without callbacks, loggers, paths), parameter counts and final metrics:
    one row of TensorBoard's hparams tab."""
    params = flatten({key: value for key, value in to_plain(cfg).items() if key not in ("callbacks", "logger", "paths")})
    params["model/params_total"] = sum(p.numel() for p in module.parameters())
    params["model/params_trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    metrics = {f"hp/{name.replace('/', '_')}": value for name, value in final_metrics.items() if not name.startswith(("train_step/", "train/lr"))}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):  # hparams and metrics written together form the row
            logger.log_hyperparams(params, metrics=metrics)
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(metrics)
        logger.finalize("success")  # the Trainer closed its writers already: flush these lines too
