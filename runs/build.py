"""Build a run from its composed config and train it; rebuild one from a file's record of its experiment to evaluate it.

A file records only its conf/ choices and overrides, composed again with this installation's conf/ and the user's
command line: classes come only from conf/, places only from the user's config (docs/trust.md).
"""

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.errors import HydraException, InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.tensorboard.summary import hparams as tensorboard_hparams

from callbacks.checkpointing import StoreRunConfig
from callbacks.predictions import PerSamplePredictions
from callbacks.resume import ContinueLogs, ExactResume
from checkpoints.loading import (
    EXPERIMENT_KEY,
    RUN_CONFIG_KEY,
    atomic_write_bytes,
    check_resumable,
    load_checkpoint,
    load_weights,
)
from datamodules.base import ImageDataModule
from runs.config_check import check_config, several_processes
from runs.entry_points import LAST_CHECKPOINT
from user_errors import UserError, writing

log = logging.getLogger(__name__)


def experiment_record() -> dict[str, Any]:
    """What a checkpoint or prediction file says of its experiment: the options chosen from conf/ and the overrides."""
    hydra = HydraConfig.get()
    return {"choices": _choices(hydra), "overrides": list(hydra.overrides.task)}


def _choices(hydra: DictConfig) -> dict[str, str | None]:
    return {group: option for group, option in hydra.runtime.choices.items() if not group.startswith("hydra")}


def command_line_keys() -> list[str]:
    """The keys, or config groups, that this job's command line sets."""
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return [override.key_or_group for override in overrides]


def _instantiate(node: DictConfig, what: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with a failure as one sentence that names the config group."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error
        while isinstance(cause, InstantiationException):  # nested: the module instantiating its network
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        reason = " ".join(f"{cause.__class__.__name__}: {cause}".split())
        raise UserError(
            f"Could not build the {what} from its config ({reason}); check the {what}.* options, `--cfg job` prints them."
        ) from error


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    log.info(f"Data: {cfg.data._target_}")
    return _instantiate(cfg.data, "data")


def build_module(cfg: DictConfig, datamodule: ImageDataModule) -> LightningModule:
    """The LightningModule, tried on two images of the data's shape: a network that cannot take them fails here."""
    shape = tuple(datamodule.input_shape)
    log.info(f"Model: {cfg.model._target_} for input {shape} and {datamodule.num_classes} classes")
    try:
        module = _instantiate(
            cfg.module,
            "model",
            _recursive_=False,  # the module instantiates its network and optimizer itself
            _convert_="all",  # plain dicts, so that its saved hyperparameters load with weights_only
            net=cfg.model,
            optimizer=cfg.optimizer,
            scheduler=cfg.scheduler,
            input_shape=list(shape),
            num_classes=datamodule.num_classes,
        )
        module.eval()  # no BatchNorm statistics updated, no dropout drawing random numbers
        with torch.no_grad():
            module(module.example_input_array)
        module.train()
    except (UserError, RuntimeError) as error:  # RuntimeError: torch's shape errors, e.g. a net sizing its layers
        cause = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if not isinstance(cause, RuntimeError):
            raise
        fix = "choose a model made for that image size, or data with larger images"
        stem = cfg.model.get("small_input_stem", True)  # null: the ImageNet stem for loaded weights
        if stem is False or (stem is None and (cfg.model.get("pretrained") or cfg.model.get("weights_path"))):
            fix = "set model.small_input_stem=true (a 3x3 stride-1 first convolution, for small images)"
        raise UserError(
            f"The model {cfg.model.get('arch', cfg.model._target_)} cannot take the {'x'.join(map(str, shape))} images of data "
            f"{cfg.data._target_} ({' '.join(str(cause).split()) or cause.__class__.__name__}): {fix}."
        ) from error
    return module


def _instantiate_each(group: DictConfig | None, what: str) -> list[Any]:
    return [_instantiate(node, f"{what}.{name}") for name, node in (group or {}).items() if node and "_target_" in node]


def build_callbacks(cfg: DictConfig, experiment: dict[str, Any] | None = None) -> list[Callback]:
    """The callbacks group; prediction files record `experiment`, the data their rows index (default: this run's)."""
    callbacks = _instantiate_each(cfg.get("callbacks"), "callbacks")
    for callback in callbacks:
        if isinstance(callback, PerSamplePredictions):
            callback.experiment = experiment or experiment_record()
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Logger]:
    return _instantiate_each(cfg.get("logger"), "logger")


def build_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger], **options: Any) -> Trainer:
    if not loggers:  # logger=none: Lightning refuses a LearningRateMonitor, which only writes to loggers
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    options |= {"callbacks": callbacks, "logger": loggers or False, "strategy": _strategy(cfg.trainer)}
    return _instantiate(cfg.trainer, "trainer", **options)


# Lightning's DDP strategies that start processes 1..N-1 by running the command line again
RELAUNCHING_DDP = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")


def _strategy(trainer_cfg: DictConfig) -> Any:
    """trainer.strategy, but `ddp` (or `auto` on several devices) as `ddp_spawn` in a multirun outside SLURM."""
    requested = trainer_cfg.get("strategy", "auto")
    strategy = "ddp" if requested == "auto" and several_processes(trainer_cfg) else requested
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if not multirun or strategy not in RELAUNCHING_DDP or SLURMEnvironment.detect():
        return requested
    spawning = strategy.replace("ddp", "ddp_spawn", 1)
    log.info(f"Multirun: trainer.strategy={requested} runs as {spawning} (ddp would relaunch the whole sweep)")
    return spawning


# The hparams tab's columns: what a sweep usually varies, plus every key this job's command line sets
HPARAM_KEYS = tuple(
    "model/_target_ data/_target_ data/torchvision_dataset optimizer/_target_ optimizer/lr optimizer/weight_decay "
    "optimizer/momentum scheduler/scheduler/_target_ data/batch_size trainer/max_epochs trainer/precision "
    "module/label_smoothing seed".split()
)
NOT_HPARAMS = ("callbacks", "logger", "paths", "hydra", "data/data_dir", "ckpt_path", "resume")
NOT_FINAL = ("train_step/", "train/lr")
# TensorBoard's Custom Scalars tab: train and val of each metric on one chart
COMPARISON_LAYOUT = {
    "train vs val": {
        title: ["Multiline", [f"^train/{metric}$", f"^val/{metric}$"]]
        for title, metric in (("loss", "loss"), ("top-1", "top1"), ("top-5", "top5"))
    }
}


def hyperparameter_row(cfg: DictConfig, module: LightningModule) -> dict[str, Any]:
    """HPARAM_KEYS, the config keys set on the command line (a group's: its _target_), and the parameter counts."""
    row: dict[str, Any] = {}
    for key in dict.fromkeys([*HPARAM_KEYS, *(key.replace(".", "/") for key in command_line_keys())]):
        value = OmegaConf.select(cfg, key.replace("/", "."), default=KeyError)  # KeyError: not in the config
        if OmegaConf.is_dict(value):  # a group chosen on the command line: its class
            key, value = f"{key}/_target_", value.get("_target_", KeyError)
        if value is not KeyError and not key.startswith(NOT_HPARAMS):
            row[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    row["model/params_total"] = sum(p.numel() for p in module.parameters())
    row["model/params_trainable"] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return row


@rank_zero_only
def log_hyperparameters(loggers: list[Logger], cfg: DictConfig, module: LightningModule) -> None:
    """The hparams row, written before fitting so a failed run shows too (log_hyperparams would need the metrics)."""
    row, splits = hyperparameter_row(cfg, module), ("val", "train", "test") if cfg.get("test") else ("val", "train")
    names = ["best_val_top1", *(f"{split}_{name}" for split in splits for name in ("top1", "top5", "loss"))]
    for logger in loggers:
        logger.log_hyperparams(row)  # TensorBoard's writes only its hparams.yaml: its tab needs the metrics' names
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_custom_scalars(COMPARISON_LAYOUT)
            for summary in tensorboard_hparams(row, dict.fromkeys([f"hp/{name}" for name in names], 0.0)):
                logger.experiment.file_writer.add_summary(summary)
            logger.experiment.flush()


# the final metrics of a finished run, in its run directory (test metrics included when it tested)
FINAL_METRICS_FILE = "metrics.json"


def log_global_batch(cfg: DictConfig, trainer: Trainer) -> None:
    """The samples behind one optimizer step; the learning rate is used as given, not scaled with the process count."""
    processes = trainer.world_size
    per_node = f" ({trainer.num_devices} per node x {trainer.num_nodes} nodes)" if trainer.num_nodes > 1 else ""
    log.info(
        f"Batch: {cfg.data.batch_size} per process x {processes} processes{per_node} = {cfg.data.batch_size * processes} samples per optimizer step"
    )
    if processes > 1:
        log.info(
            f"Learning rate: optimizer.lr={cfg.optimizer.lr} as given, not scaled with the {processes} processes (for the same training as "
            f"1 process keep the global batch; with data.batch_size per process kept, the linear rule gives optimizer.lr={cfg.optimizer.lr * processes:g})"
        )


def train(cfg: DictConfig, extra_callbacks: list[Callback] = ()) -> dict[str, float]:
    """Fit, then test the best checkpoint; the final metrics. `extra_callbacks`: a search's pruning callback."""
    out = Path(cfg.paths.output_dir)  # with resume=true: the latest run of this experiment (runs/entry_points.py)
    final, last = out / FINAL_METRICS_FILE, out / LAST_CHECKPOINT
    if cfg.resume and final.is_file():  # training and testing again would log every final row twice
        log.info(f"resume=true: the latest run of this experiment, {out}, has finished; nothing to resume.")
        return json.loads(final.read_text())
    ckpt_path = str(last) if cfg.resume and last.is_file() else cfg.ckpt_path  # config_check: never both
    if cfg.resume:
        log.info(f"Resuming {out} from {last}" if ckpt_path else "resume=true: no earlier run has a last.ckpt")
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule, experiment = build_datamodule(cfg), experiment_record()
    module = build_module(cfg, datamodule)
    if ckpt_path:  # one sentence for a wrong file before Lightning loads it (memory-mapped: no tensor read here)
        check_resumable(experiment["choices"], module, load_checkpoint(ckpt_path, mmap=True), ckpt_path)
    if cfg.get("batch_size_find") or cfg.get("lr_find"):  # the tuner only when asked for
        from runs.tuning import tune

        tune(cfg, module, datamodule, ckpt_path)
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # safe to pickle with weights_only
    # what every run adds to its callbacks group: checkpoints that rebuild it, an exact resume, continued logs
    callbacks = [StoreRunConfig(plain, experiment), ExactResume(), ContinueLogs(), *extra_callbacks]
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, [*build_callbacks(cfg, experiment), *callbacks], loggers)
    log_global_batch(cfg, trainer)
    log_hyperparameters(loggers, cfg, module)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {name: value.item() for name, value in trainer.callback_metrics.items()}
    if ckpt_path and not any(name.startswith("val/") for name in metrics) and (out / "tensorboard").is_dir():
        from analysis.run_records import read_curves  # resumed after its last epoch: the values it logged last

        metrics = {**{tag: curve[max(curve)] for tag, curve in read_curves(out)[0].items()}, **metrics}
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint else ""
    if best and checkpoint.monitor:  # callbacks=none: Lightning's own checkpoint keeps the latest epoch, unscored
        score = checkpoint.best_model_score
        if score is None:  # after ddp_spawn only the path came back: the score is in that file's callback state
            score = load_checkpoint(best)["callbacks"][checkpoint.state_key]["best_model_score"]
        metrics["best_val_top1"] = float(score)
        log.info(f"Best checkpoint: {best} (val top-1 {metrics['best_val_top1']:.4f})")
    if cfg.test:
        metrics.update(*trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True))
    final_row = {
        f"hp/{key.replace('/', '_')}": value for key, value in metrics.items() if not key.startswith(NOT_FINAL)
    }
    for logger in loggers:  # the hparams row's final metrics
        logger.log_metrics(final_row)
        logger.finalize("success")  # the Trainer closed its writers already: flush these lines too
    if trainer.is_global_zero:  # the run has finished: resume=true of it says so (above)
        with writing(str(final)):
            atomic_write_bytes(json.dumps(metrics, indent=2).encode(), final)
    log.info(f"Output dir: {out}")
    return metrics


# the config groups whose recorded option is chosen again (experiment: a recipe of conf/ choosing the others)
REBUILT_CHOICES = ("experiment", "data", "model")
# what a file may set of its data: which images and classes the weights were made for, never where they are or come from
DATA_IDENTITY = frozenset(
    {"input_shape", "num_classes", "train_size", "val_size", "test_size", "seed", "num_folds", "fold", "split_seed"}
)
# what a file may set of the module: what changes the metrics of the same weights (compile options name programs)
MODULE_SETTINGS = frozenset({"label_smoothing", "channels_last"})
ADVICE = "use a file written by this version of train.py or eval.py, or give that setting on the command line"


def replayed(key: str) -> bool:
    """Whether a recorded override of `key` is composed again: network settings (not its weights), module and data."""
    group, _, name = key.partition(".")
    if not name or any(part.startswith("_") for part in name.split(".")):
        return False
    if group == "data":
        return name in DATA_IDENTITY
    if group == "module":
        return name in MODULE_SETTINGS
    return group == "model" and name.split(".")[0] not in ("pretrained", "weights_path")


def _names_code(value: Any) -> bool:
    """Whether a value holds a mapping with one of Hydra's instantiation keys (`_target_`, ...), at any depth."""
    if isinstance(value, dict):
        return any(str(key).startswith("_") or _names_code(item) for key, item in value.items())
    return isinstance(value, list) and any(_names_code(item) for item in value)


def recorded_overrides(experiment: dict[str, Any], file: str | Path, user_keys: set[str]) -> list[str]:
    """The overrides that rebuild what `file` records, as a command line; the user's own keys (`user_keys`) win."""
    loader = GlobalHydra.instance().config_loader()
    overrides = []
    for group in REBUILT_CHOICES:
        option = experiment["choices"].get(group)
        if option is None or group in user_keys:
            continue
        if option not in loader.get_group_options(group):
            raise UserError(
                f"{file} was made with {group}={option}, which this installation's conf/{group}/ does not have: give {group}=<one it has> on the command line."
            )
        overrides.append(f"{group}={option}")
    for line in experiment["overrides"]:
        try:
            if len(line) > 1000 or "\0" in line or "${" in line:
                raise ValueError("no command line of train.py writes it")
            (override,) = OverridesParser.create().parse_overrides([line])
            key = override.key_or_group
            if override.type is not OverrideType.CHANGE or override.package or not replayed(key):
                continue  # what a file may not choose, and what adds (+), removes (~) or moves (@) keys
            if _names_code(override.value()):
                raise ValueError("its value holds one of Hydra's instantiation keys (_target_, ...)")
        except (HydraException, ValueError) as error:
            raise UserError(
                f"{file} records the override {line[:80]!r}, which is refused ({str(error).splitlines()[0]}): {ADVICE}."
            ) from None
        if not {key, key.split(".")[0]} & user_keys:  # the user's choice wins
            overrides.append(line)
    return overrides


def rebuild_config(cfg: DictConfig, experiment: dict, file: str | Path, stored: dict | None = None) -> tuple:
    """`cfg` with data, model and module composed from this conf/, `file`'s record and the user's; and that record."""
    hydra = HydraConfig.get()
    user, user_keys = list(hydra.overrides.task), set(command_line_keys())
    recorded = recorded_overrides(experiment, file, user_keys)
    try:
        rebuilt = compose(config_name=hydra.job.config_name, overrides=[*recorded, *user], return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(
            f"{file} records choices or overrides that this installation's conf/ cannot compose ({' '.join(str(error).split())}): give the model and data on the command line."
        ) from None
    restored = cfg.copy()
    for key in ("data", "model", "module"):
        restored[key] = rebuilt[key]
    for group in ("data", "model"):  # `stored`, the file's config, only compared: has a default changed since?
        before = (stored or {}).get(group)
        before = before if isinstance(before, dict) and group not in user_keys else {}
        for name, value in OmegaConf.to_container(restored[group], resolve=True).items():
            key = f"{group}.{name}"
            if name in before and before[name] != value and replayed(key) and key not in user_keys:
                raise UserError(
                    f"{file} was trained with {key}={before[name]!r}, but this installation's conf/ composes {key}={value!r} for it: give {key}={before[name]!r} on the command line to evaluate what was trained."
                )
    return restored, {"choices": _choices(rebuilt.hydra), "overrides": [*recorded, *user]}


def rebuild_from_checkpoint(cfg: DictConfig) -> tuple[DictConfig, dict, ImageDataModule, LightningModule, dict]:
    """(config, checkpoint, datamodule, module with its weights, the composition's record) for cfg.ckpt_path."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg, experiment = rebuild_config(cfg, checkpoint[EXPERIMENT_KEY], cfg.ckpt_path, checkpoint[RUN_CONFIG_KEY])
    check_config(cfg)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    load_weights(module, checkpoint, cfg.ckpt_path)
    return cfg, checkpoint, datamodule, module, experiment


def evaluate(cfg: DictConfig) -> dict[str, float]:
    unknown = sorted(set(cfg.splits) - {"val", "test"})
    if unknown:
        raise UserError(f"splits may name val and test, not {unknown}.")
    cfg, checkpoint, datamodule, module, experiment = rebuild_from_checkpoint(cfg)
    trainer = build_trainer(cfg, build_callbacks(cfg, experiment), build_loggers(cfg))
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
            f"loss {split_metrics[f'{split}/loss']:.4f}  ({cfg.ckpt_path}, epoch {checkpoint['epoch']})"
        )
    path = Path(cfg.paths.output_dir, FINAL_METRICS_FILE)
    with writing(str(path)):
        path.write_text(json.dumps({"ckpt_path": str(cfg.ckpt_path), **metrics}, indent=2))
    return metrics
