"""Every user-settable value checked before anything is built: each `_target_` node typed by its target's signature.

Custom because a hand-written schema per model and dataset would repeat its constructor (RANGES bounds what types don't).
"""

import dataclasses
import difflib
import importlib
import inspect
import operator
import os
import types
import typing
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from user_errors import UserError

# Parameters the program passes itself; a value in the config would be silently overridden.
SET_BY_THE_PROGRAM = {
    "model": ("input_shape", "num_classes"),
    "module": ("net", "optimizer", "scheduler", "input_shape", "num_classes"),
    "optimizer": ("params",),
    "scheduler.scheduler": ("optimizer",),
    "trainer": ("callbacks", "logger"),
}


POSITIVE, NON_NEGATIVE, AT_LEAST_ONE, FRACTION = "> 0", ">= 0", ">= 1", ">= 0 and < 1"
COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _holds(value: Any, bounds: str | None) -> bool:
    """Whether a number, or each of a list, is within `bounds`; what is not a number is its type's to check."""
    if isinstance(value, list):
        return all(_holds(item, bounds) for item in value)
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return all(COMPARISONS[op](value, float(bound)) for op, bound in map(str.split, bounds.split(" and ")))


# bounds a type does not give, by group and parameter name, at any depth of the group (null passes where its type does)
RANGES = {
    "optimizer": {"lr": POSITIVE, "momentum": NON_NEGATIVE, "dampening": NON_NEGATIVE, "weight_decay": NON_NEGATIVE}
    | {"eps": POSITIVE, "betas": FRACTION, "lr_decay": NON_NEGATIVE},
    "scheduler": {"max_lr": POSITIVE, "eta_min": NON_NEGATIVE, "gamma": POSITIVE, "factor": POSITIVE}
    | {"step_size": AT_LEAST_ONE, "T_max": AT_LEAST_ONE, "total_steps": AT_LEAST_ONE, "total_iters": NON_NEGATIVE}
    | {"pct_start": "> 0 and < 1"},
    "data": dict.fromkeys(("batch_size", "eval_batch_size", "val_size", "train_size", "test_size"), AT_LEAST_ONE)
    | {"num_workers": NON_NEGATIVE, "split_seed": NON_NEGATIVE, "padding": NON_NEGATIVE, "num_classes": ">= 2"},
    "model": {"dropout": FRACTION, "hidden_size": AT_LEAST_ONE, "num_layers": AT_LEAST_ONE, "head_lr": POSITIVE},
    "module": {"label_smoothing": FRACTION},
    "trainer": dict.fromkeys(
        ("max_epochs", "num_nodes", "check_val_every_n_epoch", "log_every_n_steps", "accumulate_grad_batches"),
        AT_LEAST_ONE,
    )
    | dict.fromkeys(("min_epochs", "gradient_clip_val", "limit_val_batches", "limit_test_batches"), NON_NEGATIVE)
    | {"limit_train_batches": POSITIVE, "val_check_interval": POSITIVE, "num_sanity_val_steps": ">= -1"},
    "callbacks": {"save_top_k": ">= -1", "every_n_epochs": NON_NEGATIVE, "refresh_rate": NON_NEGATIVE}
    | {"check_every_n_steps": AT_LEAST_ONE},
}
SEED_RANGE = f">= 0 and <= {2**32 - 1}"  # what numpy's and Lightning's seeding accept


# the top-level keys of conf/train.yaml
RUN_SETTINGS = {"task_name": str, "seed": int | None, "ckpt_path": str | None, "resume": bool, "test": bool}


GROUPS = ("optimizer", "scheduler", "model", "data", "module", "trainer", "callbacks", "logger")


def check_config(cfg: DictConfig, groups: tuple[str, ...] = GROUPS) -> None:
    """A UserError for the first value of the wrong type, out of range, unknown or ignored (torch-only groups first)."""
    values = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra" and not OmegaConf.is_missing(cfg, key)
    }
    _typed("", RUN_SETTINGS, {key: value for key, value in values.items() if key in RUN_SETTINGS}, {"seed": SEED_RANGE})
    if values.get("resume") and values.get("ckpt_path"):
        raise UserError(
            "Give either resume=true (continue the latest run of this experiment) or ckpt_path=PATH, not both."
        )
    for group in groups:
        if isinstance(values.get(group), dict):
            _check_tree(group, values[group], RANGES.get(group, {}))
    if isinstance(values.get("trainer"), dict):
        _check_devices(values["trainer"])


def _check_tree(path: str, node: dict[str, Any], ranges: dict[str, str]) -> None:
    if "_target_" in node:
        _check_target(path, node, ranges)
    for key, value in node.items():
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, dict):
                _check_tree(f"{path}.{key}[{index}]" if isinstance(value, list) else f"{path}.{key}", item, ranges)


def _check_target(path: str, node: dict[str, Any], ranges: dict[str, str]) -> None:
    module_name, _, attribute = str(node["_target_"]).rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        raise UserError(
            f"{path}._target_={node['_target_']} names nothing that can be imported: check the spelling of the class."
        ) from None
    settings = {key: value for key, value in node.items() if not key.startswith("_")}
    set_by_program, parameters = SET_BY_THE_PROGRAM.get(path, ()), _parameters(target)
    takes = [name for name in parameters or () if name not in set_by_program]  # None: **kwargs we cannot follow
    unknown = sorted(key for key in settings if key in set_by_program or (parameters is not None and key not in takes))
    if unknown:
        close = difflib.get_close_matches(unknown[0], takes, n=1)
        listed = ", ".join(takes[:12]) + ", ..." * (len(takes) > 12)
        hint = f"did you mean {path}.{close[0]}?" if close else f"it takes {listed}"
        if unknown[0] in set_by_program:
            hint = "the program passes it itself, from the data or another group"
        raise UserError(
            f"{path}.{unknown[0]} is not a setting of {node['_target_']} ({hint}): check the spelling, or remove it."
        )
    if parameters is not None:
        _typed(f"{path}.", {name: _omegaconf_type(parameters[name].annotation) for name in settings}, settings, ranges)


WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _typed(prefix: str, types: dict[str, Any], values: dict[str, Any], ranges: dict[str, str]) -> None:
    """Each value converted to its type by OmegaConf, then held to its range."""
    values = {key: value for key, value in values.items() if not isinstance(value, dict)}
    schema = dataclasses.make_dataclass("Settings", [(name, kind, MISSING) for name, kind in types.items()])
    try:
        OmegaConf.merge(OmegaConf.structured(schema), values)
    except ValidationError as error:
        kind = types.get(str(error.full_key).split(".")[0])
        inner = [member for member in typing.get_args(kind) if member is not type(None)]  # Optional: the type and null
        expected = f"{WORDS[inner[0]]} or null" if inner else WORDS.get(kind, "a valid value")
        raise UserError(
            f"{prefix}{error.full_key}={_shown(values.get(error.full_key))} is not {expected}: give {expected} (`--cfg job` shows the current value)."
        ) from None
    key = next((key for key, value in values.items() if not _holds(value, ranges.get(key))), None)
    if key is not None:
        raise UserError(f"{prefix}{key}={_shown(values[key])} is out of range: it must be {ranges[key]}.")


def _parameters(target: Any) -> dict[str, inspect.Parameter] | None:
    """The target's keyword parameters, following **kwargs up its classes; None where they lead out of sight."""
    found: dict[str, inspect.Parameter] = {}
    functions = (
        [cls.__init__ for cls in target.__mro__ if "__init__" in vars(cls)] if inspect.isclass(target) else [target]
    )
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return None
        for parameter in parameters:
            if parameter.name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                found.setdefault(parameter.name, parameter)
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
            return found
    return None


def _omegaconf_type(annotation: Any) -> Any:
    """A type OmegaConf can check: the plain scalar type (or Optional of it; `float | Tensor` is a float here), else Any."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    plain = [member for member in members if member not in (type(None), torch.Tensor)]
    if len(plain) != 1 or plain[0] not in WORDS:
        return Any
    return plain[0] | None if type(None) in members else plain[0]


def _shown(value: Any) -> str:
    return "null" if value is None else str(value)


def _check_devices(trainer: dict[str, Any]) -> None:
    """A device count the machine cannot provide (Lightning would start 64 CPU processes for devices=64)."""
    accelerator, devices = str(trainer.get("accelerator", "auto")), trainer.get("devices", "auto")
    gpus = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda") and gpus == 0:
        raise UserError(
            f"trainer.accelerator={accelerator} asks for a GPU but this machine has none that torch can use: use trainer=cpu (or trainer.accelerator=auto)."
        )
    uses_gpus = gpus > 0 and accelerator in ("gpu", "cuda", "auto")  # gpu without one: refused above
    available, unit = (gpus, "GPUs") if uses_gpus else (os.cpu_count() or 1, "CPU cores")
    if isinstance(devices, int) and devices > available:  # "auto", -1 or indices: Lightning's
        raise UserError(
            f"trainer.devices={devices} asks for more devices than the {available} {unit} of this machine: use trainer.devices={available} or fewer."
        )


def several_processes(trainer: DictConfig) -> bool:
    """Whether these trainer settings start more than one process: devices -1, above 1, or several ids ("0,1", [0, 1])."""
    devices = str(trainer.get("devices")).strip()
    several = devices == "-1" or "," in devices or (devices.isdigit() and int(devices) > 1)
    return several or (trainer.get("num_nodes") or 1) > 1
