"""Building the DataModule, LightningModule, callbacks, loggers and Trainer from a composed config, and turning
the config into plain data that checkpoints store and the hparams tab shows."""

import logging
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams as tensorboard_hparams

from callbacks.checkpointing import StoreRunConfig
from callbacks.predictions import PerSamplePredictions
from callbacks.resume import ContinueLogs, ExactResume
from datamodules.base import ImageDataModule
from user_errors import UserError


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts, lists and scalars (safe to pickle with weights_only)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def experiment_record() -> dict[str, Any]:
    """What a checkpoint or prediction file says about its experiment, as data: the options chosen from conf/
    (`data: mnist`, `model: lenet`, ...) and the command line's overrides; never a class or a place to rebuild from
    (runs/evaluation.py composes this installation's conf/ with them)."""
    if not HydraConfig.initialized():
        return {"choices": {}, "overrides": []}
    hydra = HydraConfig.get()
    choices = {group: option for group, option in hydra.runtime.choices.items() if not group.startswith("hydra")}
    return {"choices": choices, "overrides": list(hydra.overrides.task)}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer/lr": 0.1}, for TensorBoard's hparams tab."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        elif isinstance(value, (list, tuple)):
            flat[name] = str(value)
        else:
            flat[name] = value
    return flat


log = logging.getLogger(__name__)


def _instantiate(node: DictConfig, what: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with a failure turned into one sentence that names the config group."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while isinstance(cause, InstantiationException):  # nested: the module instantiating its network
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        reason = f"{cause.__class__.__name__}: {cause}" if cause else str(error)
        raise UserError(
            f"Could not build the {what} from its config ({' '.join(reason.split())}); check the {what}.* options, `--cfg job` prints them."
        ) from error


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    log.info(f"Data: {cfg.data._target_}")
    return _instantiate(cfg.data, "data")


def build_module(cfg: DictConfig, datamodule: ImageDataModule) -> LightningModule:
    """The LightningModule, its network shaped by the datamodule (channels, image size, classes).

    The network is tried on the module's example input, so that a network that cannot take the
    dataset's images (e.g. one that pools a 28x28 image down to nothing) fails here, in one sentence,
    not at the first training step.
    """
    log.info(
        f"Model: {cfg.model._target_} for input {tuple(datamodule.input_shape)} and {datamodule.num_classes} classes"
    )
    try:
        module = _instantiate(
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
        _forward_example_input(module)
    except UserError as error:
        construction_error = _first_cause(error)
        if not isinstance(
            construction_error, RuntimeError
        ):  # RuntimeError: torch's shape errors, e.g. in a net sizing its layers
            raise
        raise _cannot_take_the_images(cfg, datamodule, construction_error) from error
    except RuntimeError as error:
        raise _cannot_take_the_images(cfg, datamodule, error) from error
    return module


def _first_cause(error: BaseException) -> BaseException:
    """The error at the bottom of a chain of re-raises (instantiate wraps what a constructor raised)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _forward_example_input(module: LightningModule) -> None:
    """One forward pass of the module's example input (two images of the dataset's shape), changing nothing."""
    was_training = module.training
    module.eval()  # no BatchNorm statistics updated, no dropout drawing random numbers
    try:
        with torch.no_grad():
            module(module.example_input_array)
    finally:
        module.train(was_training)


def _cannot_take_the_images(cfg: DictConfig, datamodule: ImageDataModule, error: Exception) -> UserError:
    reason = " ".join(str(error).split()) or error.__class__.__name__
    shape = "x".join(map(str, datamodule.input_shape))
    return UserError(
        f"The model {cfg.model._target_} cannot take the {shape} images of data {cfg.data._target_} ({reason}): "
        "choose a model made for that image size, or data with larger images."
    )


def _instantiate_each(group: DictConfig | None, what: str) -> list[Any]:
    return [_instantiate(node, f"{what}.{name}") for name, node in (group or {}).items() if node and "_target_" in node]


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    return _instantiate_each(cfg.get("callbacks"), "callbacks")


def build_training_callbacks(cfg: DictConfig) -> list[Callback]:
    """The callbacks group, and the three that train.py always needs, whatever that group says: they make every
    checkpoint rebuild its run (StoreRunConfig), a resume continue bit for bit (ExactResume) and the logs go on
    where they stopped (ContinueLogs)."""
    experiment = experiment_record()
    callbacks = build_callbacks(cfg)
    record_experiment(callbacks, experiment)
    return callbacks + [StoreRunConfig(to_plain(cfg), experiment), ExactResume(), ContinueLogs()]


def record_experiment(callbacks: list[Callback], experiment: dict[str, Any]) -> None:
    """The prediction files' sidecars say which experiment's data their rows index (compare.py rebuilds it)."""
    for callback in callbacks:
        if isinstance(callback, PerSamplePredictions):
            callback.experiment = experiment


def build_loggers(cfg: DictConfig) -> list[Logger]:
    return _instantiate_each(cfg.get("logger"), "logger")


def build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]) -> Trainer:
    strategy = _strategy(cfg.trainer)
    if not loggers:  # logger=none: Lightning refuses a LearningRateMonitor, which only writes to loggers
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    return _instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False, strategy=strategy)


def build_finder_trainer(cfg: DictConfig, steps: int) -> Trainer:
    """The run's trainer settings (device, precision, gradient accumulation) without its callbacks, loggers or
    checkpoints: a finder's `steps` (runs/tuning.py) leave nothing in the run's records."""
    # a finite run length that the finder's step count ends first, however few batches an epoch has (schedulers
    # whose length is filled in from the run, T_max/total_steps null, need a finite one; the finder swaps them out)
    options = {"max_epochs": steps, "max_steps": steps, "min_epochs": None, "num_sanity_val_steps": 0}
    options |= {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    return _instantiate(cfg.trainer, "trainer", callbacks=[], logger=False, strategy=_strategy(cfg.trainer), **options)


# Lightning's DDP strategies that start processes 1..N-1 by running the command line again, and their
# counterparts that start them with torch.multiprocessing instead
RELAUNCHING_DDP = {
    "ddp": "ddp_spawn",
    "ddp_find_unused_parameters_true": "ddp_spawn_find_unused_parameters_true",
    "ddp_find_unused_parameters_false": "ddp_spawn_find_unused_parameters_false",
}


def _strategy(trainer_cfg: DictConfig) -> Any:
    """trainer.strategy, except that in a multirun `ddp` becomes `ddp_spawn`.

    `ddp` starts the other processes by running `sys.argv` again with `hydra.run.dir` set to the run
    directory (lightning.fabric.strategies.launchers.subprocess_script). Under `-m` that command line
    is the whole sweep: every extra process would start a sweep of its own. `ddp_spawn` starts the
    processes from inside this job, so they run this job's fit only. Under SLURM the processes are
    started by srun, not relaunched, and `ddp` stays. (`auto` with several devices counts as `ddp`:
    that is what Lightning would choose.)
    """
    strategy = requested = trainer_cfg.get("strategy", "auto")
    devices, num_nodes = trainer_cfg.get("devices"), trainer_cfg.get("num_nodes") or 1
    if strategy == "auto" and ((isinstance(devices, int) and devices > 1) or num_nodes > 1):
        strategy = "ddp"  # what Lightning chooses for several devices
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if not multirun or not isinstance(strategy, str) or strategy not in RELAUNCHING_DDP or SLURMEnvironment.detect():
        return requested
    log.info(
        f"Multirun: trainer.strategy={requested} runs as {RELAUNCHING_DDP[strategy]} (ddp would start each extra process with the whole sweep's command line)"
    )
    return RELAUNCHING_DDP[strategy]


# The hparams tab's columns: what a homework sweep usually varies, plus every key this job's command line sets
# (in a multirun, the swept ones among them). The whole composed config is in .hydra/config.yaml and in each checkpoint.
HPARAM_KEYS = (
    "model/_target_",
    "data/_target_",
    "data/torchvision_dataset",  # MNIST, FashionMNIST or KMNIST: one _target_ serves the three
    "optimizer/_target_",
    "optimizer/lr",
    "optimizer/weight_decay",
    "optimizer/momentum",
    "scheduler/scheduler/_target_",
    "data/batch_size",
    "trainer/max_epochs",
    "trainer/precision",
    "module/label_smoothing",
    "seed",
)
NOT_HPARAMS = ("callbacks", "logger", "paths", "hydra", "data/data_dir", "ckpt_path", "resume")
# the final metrics of the hparams tab (hp/<split>_<metric>), declared when the run starts, written when it ends
FINAL_METRICS = ("best_val_top1", "val_top1", "val_top5", "val_loss", "train_top1", "train_top5", "train_loss")
TEST_METRICS = ("test_top1", "test_top5", "test_loss")
# TensorBoard's Custom Scalars tab: train and val of each metric on one chart
COMPARISON_LAYOUT = {
    "train vs val": {
        title: ["Multiline", [f"^train/{metric}$", f"^val/{metric}$"]]
        for title, metric in (("loss", "loss"), ("top-1", "top1"), ("top-5", "top5"))
    }
}


def hyperparameter_row(cfg: DictConfig, module: LightningModule) -> dict[str, Any]:
    """HPARAM_KEYS, the config keys set on the command line, and the parameter counts."""
    flat = flatten(to_plain(cfg))
    overridden = []
    if HydraConfig.initialized():
        for override in HydraConfig.get().overrides.task:
            key = override.lstrip("+~").split("=", 1)[0].replace(".", "/")
            overridden += [key] if key in flat else [f"{key}/_target_"]  # a group (optimizer=adam): its _target_
    keys = [
        key for key in dict.fromkeys([*HPARAM_KEYS, *overridden]) if key in flat and not key.startswith(NOT_HPARAMS)
    ]
    params = {key: flat[key] if isinstance(flat[key], (int, float, str, bool)) else str(flat[key]) for key in keys}
    params["model/params_total"] = sum(p.numel() for p in module.parameters())
    params["model/params_trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return params


@rank_zero_only
def log_hyperparameters_at_start(loggers: list[Logger], cfg: DictConfig, module: LightningModule) -> None:
    """The run's hparams-tab row, its final metrics declared (their values come at the end), and the
    train-vs-val layout, written before fitting: a running or failed run shows in TensorBoard too."""
    params = hyperparameter_row(cfg, module)
    metric_names = [f"hp/{name}" for name in FINAL_METRICS + (TEST_METRICS if cfg.get("test") else ())]
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            writer.add_custom_scalars(COMPARISON_LAYOUT)
            # torch's hparams summaries written as they are: TensorBoardLogger.log_hyperparams would also log the
            # metrics' values, which are not known yet
            for summary in tensorboard_hparams(params, {name: 0.0 for name in metric_names}):
                writer.file_writer.add_summary(summary)
            writer.flush()


def log_hyperparameters(
    loggers: list[Logger], cfg: DictConfig, module: LightningModule, final_metrics: dict[str, float]
) -> None:
    """The final metrics of the run's hparams-tab row (TensorBoard: its row was written at the start); other
    loggers get the row and the metrics together."""
    metrics = {
        f"hp/{name.replace('/', '_')}": value
        for name, value in final_metrics.items()
        if not name.startswith(("train_step/", "train/lr"))
    }
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_metrics(metrics)
        else:
            logger.log_hyperparams(hyperparameter_row(cfg, module))
            logger.log_metrics(metrics)
        logger.finalize("success")  # the Trainer closed its writers already: flush these lines too
