"""Rebuilding a run from what a file records of it (eval.py; compare.py, export.py and predict.py start from a checkpoint
or a prediction file too), and evaluating it.

A file from elsewhere records its experiment as data: the options it chose from conf/ (`data=tiny_imagenet
model=resnet18`) and its command line's overrides. The rebuild composes this installation's own conf/ with those
choices, the overrides of the network's and the module's hyperparameters and of what defines the data's images
and classes (DATA_IDENTITY), and then the user's own command line, exactly as a command line is composed and
checked. So the classes built come only from conf/, and every place (the data folder, what is downloaded from
where, caches, outputs) only from the user's config: a file cannot name either (docs/trust.md).
"""

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from lightning import LightningModule
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from callbacks.predictions import PerSamplePredictions
from checkpoints.loading import EXPERIMENT_KEY, RUN_CONFIG_KEY, load_checkpoint, load_weights
from datamodules.base import ImageDataModule
from runs.build import build_callbacks, build_datamodule, build_loggers, build_module, build_trainer
from runs.config_check import check_config
from user_errors import UserError, writing

log = logging.getLogger(__name__)

# the config groups whose recorded option is chosen again (experiment: a recipe of conf/ choosing the others)
REBUILT_CHOICES = ("experiment", "data", "model")
# the parts of the config the weights depend on, taken from the rebuilt config
RESTORED_FROM_THE_FILE = ("data", "model", "module")
# what a file may set of its data: which images and classes the weights were made for, never where they are or come from
DATA_IDENTITY = frozenset(
    {"input_shape", "num_classes", "train_size", "val_size", "test_size", "seed", "num_folds", "fold", "split_seed"}
)
# the network's own sources of initial weights: a rebuilt network takes its weights from the file, never from these
INITIAL_WEIGHTS = frozenset({"pretrained", "weights_path"})
LONGEST_OVERRIDE = 1000


# what a file may set of the LightningModule: what changes the metrics of the same weights (compile options name programs
# and folders, and change nothing the weights mean)
MODULE_SETTINGS = frozenset({"label_smoothing", "channels_last"})


def replayed(key: str) -> bool:
    """Whether a recorded override of `key` is composed again: the network's hyperparameters (never a class, `_target_`,
    nor a source of initial weights), the module's MODULE_SETTINGS and the data's identity."""
    group, _, name = key.partition(".")
    if not name or any(part.startswith("_") for part in name.split(".")):
        return False
    if group == "data":
        return name in DATA_IDENTITY
    if group == "module":
        return name in MODULE_SETTINGS
    return group == "model" and name.split(".")[0] not in INITIAL_WEIGHTS


def _names_code(value: Any) -> bool:
    """Whether a value holds a mapping with one of Hydra's instantiation keys (`_target_`, `_args_`, `_partial_`, ...),
    at any depth: instantiating the network would build it."""
    if isinstance(value, dict):
        return any(str(key).startswith("_") or _names_code(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_names_code(item) for item in value)
    return False


def recorded_overrides(experiment: dict[str, Any], file: str | Path, user_keys: set[str]) -> list[str]:
    """The overrides that rebuild what `file` records, as a command line; the user's own keys (`user_keys`) win."""
    advice = "use a file written by this version of train.py or eval.py, or give that setting on the command line"
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
        if len(line) > LONGEST_OVERRIDE or "\0" in line or "${" in line:
            raise UserError(
                f"{file} records an override that no command line of train.py writes ({line[:60]!r}...): {advice}."
            )
        try:
            (override,) = OverridesParser.create().parse_overrides([line])
        except (HydraException, ValueError) as error:
            raise UserError(
                f"{file} records the override {line[:80]!r}, which is not a valid override ({str(error).splitlines()[0]}): {advice}."
            ) from None
        key = override.key_or_group
        if (
            override.is_add()
            or override.is_delete()
            or override.is_force_add()
            or override.package
            or key in user_keys
            or key.split(".")[0]
            in user_keys  # the user chose another option of that group: its settings are the user's
        ):
            continue
        if replayed(key) and _names_code(override.value()):
            raise UserError(
                f"{file} records the override {line[:80]!r}, whose value holds one of Hydra's instantiation keys (_target_, ...): a file gives values, never things to build; {advice}."
            )
        if replayed(key):
            overrides.append(line)
    return overrides


def rebuild_config(
    cfg: DictConfig, experiment: dict[str, Any], file: str | Path, stored_config: dict[str, Any] | None = None
) -> tuple[DictConfig, dict[str, Any]]:
    """`cfg` with its data, model and module composed from this installation's conf/, the experiment `file` records
    and the user's command line (runs/evaluation.py's docstring), and that composition's own record (for the
    prediction files it writes)."""
    hydra = HydraConfig.get()
    user = list(hydra.overrides.task)
    user_keys = {override.key_or_group for override in OverridesParser.create().parse_overrides(user)}
    recorded = recorded_overrides(experiment, file, user_keys)
    try:
        rebuilt = compose(config_name=hydra.job.config_name, overrides=[*recorded, *user], return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        reason = " ".join(str(error).split())
        raise UserError(
            f"{file} records choices or overrides that this installation's conf/ cannot compose ({reason}): give the model and data on the command line."
        ) from None
    restored = cfg.copy()
    for key in RESTORED_FROM_THE_FILE:
        restored[key] = rebuilt[key]
    check_same_as_trained(restored, stored_config, file, user_keys)
    choices = {
        group: option for group, option in rebuilt.hydra.runtime.choices.items() if not group.startswith("hydra")
    }
    return restored, {"choices": choices, "overrides": [*recorded, *user]}


def check_same_as_trained(
    rebuilt: DictConfig, stored_config: dict[str, Any] | None, file: str | Path, user_keys: set[str]
) -> None:
    """Compare (never build from) the file's stored config: a network setting or a data identity that this installation's
    conf/ now composes differently (a default changed since) would evaluate other images or another network."""
    if not isinstance(stored_config, dict):
        return
    for group in ("data", "model"):
        stored, current = stored_config.get(group), OmegaConf.to_container(rebuilt[group], resolve=True)
        if not isinstance(stored, dict) or group in user_keys:
            continue
        for name, value in current.items():
            key = f"{group}.{name}"
            if (
                group == "data"
                and name not in DATA_IDENTITY
                or not replayed(key)
                or key in user_keys
                or name not in stored
            ):
                continue
            if isinstance(value, (int, float, str, bool, list)) and stored[name] != value:
                raise UserError(
                    f"{file} was trained with {key}={stored[name]!r}, but this installation's conf/ composes {key}={value!r} for it: give {key}={stored[name]!r} on the command line to evaluate what was trained."
                )


class Rebuilt(NamedTuple):
    """A checkpoint rebuilt: the config composed for it, its contents, its datamodule and module (with its weights),
    and the record of that composition (what the prediction files of this command index)."""

    cfg: DictConfig
    checkpoint: dict[str, Any]
    datamodule: ImageDataModule
    module: LightningModule
    experiment: dict[str, Any]


def rebuild_from_checkpoint(cfg: DictConfig) -> Rebuilt:
    checkpoint = load_checkpoint(cfg.ckpt_path)
    cfg, experiment = rebuild_config(cfg, checkpoint[EXPERIMENT_KEY], cfg.ckpt_path, checkpoint[RUN_CONFIG_KEY])
    check_config(cfg)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    load_weights(module, checkpoint, cfg.ckpt_path)
    return Rebuilt(cfg, checkpoint, datamodule, module, experiment)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    unknown = sorted(set(cfg.splits) - {"val", "test"})
    if unknown:
        raise UserError(f"splits may name val and test, not {unknown}.")
    cfg, checkpoint, datamodule, module, experiment = rebuild_from_checkpoint(cfg)
    trainer = build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))
    for callback in trainer.callbacks:
        if isinstance(callback, PerSamplePredictions):
            callback.weights_from(cfg.ckpt_path, checkpoint["epoch"])
            callback.experiment = experiment  # what these rows index: the data evaluated

    metrics: dict[str, float] = {}
    for split in cfg.splits:
        run = trainer.validate if split == "val" else trainer.test
        (split_metrics,) = run(module, datamodule=datamodule, verbose=False)
        metrics.update(split_metrics)
        print(
            f" * {split}: top-1 {100 * split_metrics[f'{split}/top1']:.2f}%  top-5 {100 * split_metrics[f'{split}/top5']:.2f}%  "
            f"loss {split_metrics[f'{split}/loss']:.4f}  ({cfg.ckpt_path}, epoch {checkpoint.get('epoch', '?')})"
        )
    with writing(f"{cfg.paths.output_dir}/metrics.json"):
        Path(cfg.paths.output_dir, "metrics.json").write_text(
            json.dumps({"ckpt_path": str(cfg.ckpt_path), **metrics}, indent=2)
        )
    return metrics
