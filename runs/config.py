"""Turning composed configs into plain data that can be stored in checkpoints and logged."""

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts, lists and scalars (safe to pickle with weights_only)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


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


def quoted(value: str) -> str:
    """`value` as a single-quoted Hydra override value: paths with spaces, commas or '=' stay one string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def positional_to_overrides(arguments: Sequence[str], keys: Sequence[str]) -> list[str]:
    """`A B ...` -> `a=A b=B ...` for keys ("a", "b"): the leading arguments that are neither key=value nor flags,
    one per key, quoted for Hydra (a path with spaces, commas or digits only stays one string)."""
    rewritten = list(arguments)
    for position, key in enumerate(keys):
        if position < len(rewritten) and "=" not in rewritten[position] and not rewritten[position].startswith("-"):
            rewritten[position] = f"{key}={quoted(rewritten[position])}"
        else:
            break
    return rewritten
