"""One validation layer for every user-settable value, run before anything is built or written.

Each config node with a `_target_` is checked against that target's own signature: OmegaConf typed nodes,
made from the parameter annotations, convert or refuse each value (a wrong type); a key the target does not
take is refused (a typo such as `+optimizer.lrr`), and so is a key the program sets itself (`+model.num_classes`,
which the datamodule decides). RANGES then bounds the values a type alone does not. So a new model or dataset
needs no schema of its own: its constructor is the schema.
"""

import dataclasses
import difflib
import importlib
import inspect
import os
import types
import typing
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from user_errors import UserError

# Parameters the program passes itself; a value in the config would be silently overridden.
SET_BY_THE_PROGRAM = {
    "model": {"input_shape": "the data's image shape", "num_classes": "the data's number of classes"},
    "module": {
        name: "the groups model/optimizer/scheduler and the data"
        for name in ("net", "optimizer", "scheduler", "input_shape", "num_classes")
    },
    "optimizer": {"params": "the network's parameters"},
    "scheduler.scheduler": {"optimizer": "the optimizer group"},
    "trainer": {"callbacks": "the callbacks group", "logger": "the logger group"},
}


@dataclasses.dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high}")
        return " and ".join(parts)


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1, high_open=True)
# bounds by parameter name, wherever it appears (null is always allowed where the type allows it)
RANGES = {
    "lr": POSITIVE,
    "max_lr": POSITIVE,
    "head_lr": POSITIVE,
    "momentum": NON_NEGATIVE,
    "dampening": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "eps": POSITIVE,
    "betas": FRACTION,
    "lr_decay": NON_NEGATIVE,
    "eta_min": NON_NEGATIVE,
    "gamma": POSITIVE,
    "step_size": AT_LEAST_ONE,
    "T_max": AT_LEAST_ONE,
    "total_steps": AT_LEAST_ONE,
    "pct_start": Range(0, 1, low_open=True, high_open=True),
    "factor": POSITIVE,
    "total_iters": NON_NEGATIVE,
    "batch_size": AT_LEAST_ONE,
    "eval_batch_size": AT_LEAST_ONE,
    "num_workers": NON_NEGATIVE,
    "val_size": AT_LEAST_ONE,
    "train_size": AT_LEAST_ONE,
    "test_size": AT_LEAST_ONE,
    "split_seed": NON_NEGATIVE,
    "padding": NON_NEGATIVE,
    "label_smoothing": FRACTION,
    "dropout": FRACTION,
    "hidden_size": AT_LEAST_ONE,
    "num_layers": AT_LEAST_ONE,
    "max_epochs": AT_LEAST_ONE,
    "min_epochs": NON_NEGATIVE,
    "num_nodes": AT_LEAST_ONE,
    "check_val_every_n_epoch": AT_LEAST_ONE,
    "log_every_n_steps": AT_LEAST_ONE,
    "accumulate_grad_batches": AT_LEAST_ONE,
    "gradient_clip_val": NON_NEGATIVE,
    "limit_train_batches": POSITIVE,  # 0 would train nothing and save no checkpoint
    "val_check_interval": POSITIVE,
    "num_classes": Range(2),
    "limit_val_batches": NON_NEGATIVE,
    "limit_test_batches": NON_NEGATIVE,
    "num_sanity_val_steps": Range(-1),
    "save_top_k": Range(-1),
    "every_n_epochs": NON_NEGATIVE,
    "refresh_rate": NON_NEGATIVE,
    "check_every_n_steps": AT_LEAST_ONE,
}
SEED_RANGE = Range(0, 2**32 - 1)  # what numpy's and Lightning's seeding accept


@dataclasses.dataclass
class RunSettings:
    """The top-level keys of conf/train.yaml."""

    task_name: str = MISSING
    seed: int | None = MISSING
    ckpt_path: str | None = MISSING
    resume: bool = MISSING
    test: bool = MISSING


def check_config(
    cfg: DictConfig,
    groups: tuple[str, ...] = ("optimizer", "scheduler", "model", "data", "module", "trainer", "callbacks", "logger"),
) -> None:
    """Raise a UserError naming the first value that is of the wrong type, out of range, unknown or ignored.

    Each group's check imports only its target's module, and the groups whose targets need only torch come first:
    a mistake there is refused before Lightning is imported."""
    # Hydra's own node (composed in tests, `--cfg hydra`) is not ours to check, and holds values only its run fills
    values = {key: _resolved(cfg, key) for key in cfg if key != "hydra" and not OmegaConf.is_missing(cfg, key)}
    _check_top_level(values)
    for group in groups:
        node = values.get(group)
        if isinstance(node, dict):
            _check_tree(group, node)
    if isinstance(values.get("trainer"), dict):
        _check_devices(values["trainer"])


def _resolved(cfg: DictConfig, key: str) -> Any:
    value = cfg[key]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _check_top_level(values: dict[str, Any]) -> None:
    wanted = {field.name for field in dataclasses.fields(RunSettings)}
    _typed(RunSettings, {key: value for key, value in values.items() if key in wanted}, "")
    seed = values.get("seed")
    if seed is not None and not SEED_RANGE.holds(seed):
        raise UserError(
            f"seed={seed} is out of range: give a whole number {SEED_RANGE}, or seed=null for a random run."
        )


def _check_tree(path: str, node: dict[str, Any]) -> None:
    """Check `node` if it names a target, then every nested node (callbacks.*, data.augment, scheduler.scheduler, ...)."""
    if "_target_" in node:
        _check_target_node(path, node)
    for key, value in node.items():
        if isinstance(value, dict):
            _check_tree(f"{path}.{key}", value)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    _check_tree(f"{path}.{key}[{index}]", item)


def _check_target_node(path: str, node: dict[str, Any]) -> None:
    target = _locate(node["_target_"], path)
    parameters = _parameters(target)
    settings = {key: value for key, value in node.items() if not key.startswith("_")}
    set_by_program = SET_BY_THE_PROGRAM.get(path, {})
    for key in settings:
        if key in set_by_program:
            raise UserError(
                f"{path}.{key} is set by the program from {set_by_program[key]}, so a value here would be ignored: remove {path}.{key}."
            )
    if parameters is None:  # the target takes **kwargs it forwards somewhere we cannot see
        return
    unknown = sorted(set(settings) - set(parameters))
    if unknown:
        takes = [name for name in parameters if name not in set_by_program]
        close = difflib.get_close_matches(unknown[0], takes, n=1)
        hint = (
            f"did you mean {path}.{close[0]}?"
            if close
            else f"it takes {', '.join(takes[:12])}{', ...' if len(takes) > 12 else ''}"
        )
        raise UserError(
            f"{path}.{unknown[0]} is not a setting of {node['_target_']} ({hint}): check the spelling, or remove it."
        )
    schema = dataclasses.make_dataclass(
        f"{path}_settings",
        [(name, _omegaconf_type(parameters[name]), dataclasses.field(default=MISSING)) for name in settings],
    )
    _typed(schema, {key: value for key, value in settings.items() if not isinstance(value, dict)}, f"{path}.")
    for key, value in settings.items():
        _check_range(f"{path}.{key}", key, value)


def _typed(schema: type, values: dict[str, Any], prefix: str) -> None:
    """Let OmegaConf's typed nodes convert `values`; a value they refuse becomes one sentence."""
    try:
        OmegaConf.merge(OmegaConf.structured(schema), values)
    except ValidationError as error:
        key = f"{prefix}{error.full_key}"
        expected = getattr(schema, "__annotations__", {}).get(str(error.full_key).split(".")[0])
        raise UserError(
            f"{key}={_shown(values.get(error.full_key))} is not {_described(expected)}: give {_described(expected)} (`--cfg job` shows the current value)."
        ) from None
    except ConfigKeyError as error:  # only the top level, whose unknown keys Hydra stops first
        raise UserError(f"{prefix}{error.full_key} is not a setting: check the spelling.") from None


def _check_range(full_key: str, name: str, value: Any) -> None:
    bounds = RANGES.get(name)
    if bounds is None or value is None or isinstance(value, bool):
        return
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, (int, float)) and not bounds.holds(item):
            raise UserError(f"{full_key}={_shown(value)} is out of range: it must be {bounds}.")


def _locate(target: str, path: str) -> Callable:
    module_name, _, attribute = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        raise UserError(
            f"{path}._target_={target} names nothing that can be imported: check the spelling of the class."
        ) from None


def _parameters(target: Callable) -> dict[str, inspect.Parameter] | None:
    """The target's keyword parameters, following **kwargs up the class hierarchy; None when they lead out of sight."""
    found: dict[str, inspect.Parameter] = {}
    callables = (
        [cls.__init__ for cls in target.__mro__ if "__init__" in vars(cls)] if inspect.isclass(target) else [target]
    )
    for function in callables:
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            return None
        forwards = False
        for name, parameter in signature.parameters.items():
            if name == "self" or parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                forwards = True
                continue
            found.setdefault(name, parameter)
        if not forwards:
            return found
    return None


PLAIN_TYPES = (bool, int, float, str)


def _omegaconf_type(parameter: inspect.Parameter) -> Any:
    """A type OmegaConf can check for this parameter: its plain scalar type (or Optional of it), else Any."""
    annotation = parameter.annotation
    if isinstance(annotation, str):  # postponed annotations are not evaluated here
        return Any
    if annotation in PLAIN_TYPES:
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        optional = type(None) in members
        plain = [member for member in members if member in PLAIN_TYPES]
        others = [member for member in members if member not in PLAIN_TYPES and member is not type(None)]
        if len(plain) == 1 and all(other is torch.Tensor for other in others):  # lr: float | Tensor is a float here
            return plain[0] | None if optional else plain[0]
    return Any


def _described(annotation: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = next(member for member in typing.get_args(annotation) if member is not type(None))
        return f"{names.get(inner, 'a value')} or null"
    return names.get(annotation, "a valid value")


def _shown(value: Any) -> str:
    return "null" if value is None else str(value)


def _check_devices(trainer: dict[str, Any]) -> None:
    """A device count the machine cannot provide, said in its own terms (Lightning would start 64 CPU
    processes for devices=64, or report "No supported gpu backend found!")."""
    accelerator, devices = str(trainer.get("accelerator", "auto")), trainer.get("devices", "auto")
    gpus = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda") and gpus == 0:
        raise UserError(
            f"trainer.accelerator={accelerator} asks for a GPU but this machine has none that torch can use: use trainer=cpu (or trainer.accelerator=auto)."
        )
    if (
        not isinstance(devices, int) or isinstance(devices, bool) or devices < 1
    ):  # "auto", -1 (all) or a list of indices: Lightning checks those
        return
    uses_gpus = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    available, unit = (gpus, "GPUs") if uses_gpus else (os.cpu_count() or 1, "CPU cores")
    if devices > available:
        raise UserError(
            f"trainer.devices={devices} asks for more devices than the {available} {unit} of this machine: use trainer.devices={available} or fewer."
        )
