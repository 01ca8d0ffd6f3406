"""Checkpoints as data: read with weights_only=True, naming no code or places (docs/trust.md); written atomically."""

import os
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.nn import Module

from user_errors import UserError, replace_whole, writing

# callbacks/checkpointing.py stores the composed config (never built from) and the experiment (conf/ choices, overrides)
RUN_CONFIG_KEY = "run_config"
EXPERIMENT_KEY = "experiment"


def is_experiment_record(record: Any) -> bool:
    """{"choices": {group: option or None}, "overrides": [override, ...]}: what a file may say about its experiment."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("choices"), dict)
        and isinstance(record.get("overrides"), list)
        and all(isinstance(key, str) and isinstance(value, str | None) for key, value in record["choices"].items())
        and all(isinstance(override, str) for override in record["overrides"])
    )


def read_weights_only(path: str | Path, setting: str, expected: str, mmap: bool = False) -> Any:
    """torch.load(path, weights_only=True), each way it can fail one sentence asking for `setting`=`expected`."""
    if not path:
        raise UserError(f"No file given: pass {setting}={expected}.")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No checkpoint file at {path}: pass {setting}={expected}.")
    try:
        with zipfile.ZipFile(path) as archive:  # every member's CRC: torch.load would read flipped bytes as weights
            damaged = archive.testzip()
        if damaged is None:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        blocked = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), "not plain data")
        raise UserError(
            f"Refusing to load {path}: loading it would run code it names ({blocked}); pass {setting}={expected}."
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise UserError(f"{path} is truncated or not a PyTorch checkpoint; pass {setting}={expected}.") from error
    raise UserError(f"{path} is damaged ({damaged} fails its checksum): pass {setting}={expected}.")


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint of train.py, its shape checked: weights (names to tensors), an epoch, its config and experiment."""
    checkpoint = read_weights_only(path, "ckpt_path", "<run dir>/checkpoints/<name>.ckpt of a run of train.py", mmap)
    well_formed = (
        isinstance(checkpoint, dict)
        and isinstance(checkpoint.get("state_dict"), dict)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint["state_dict"].items())
        and isinstance(checkpoint.get("epoch"), int)
        and isinstance(checkpoint.get(RUN_CONFIG_KEY), dict)
        and is_experiment_record(checkpoint.get(EXPERIMENT_KEY))
    )
    if not well_formed:
        raise UserError(
            f"{path} is not a checkpoint written by this version of train.py (it lacks its weights, epoch, config or the record of its experiment): pass one that is."
        )
    return checkpoint


AS_TRAINED = "with the model and data it was trained with (leave out model=/data= overrides)"


def check_same_network(wanted: dict[str, Any], saved: dict[str, Any], path: str | Path, advice: str) -> None:
    """Refuse weights of another network or dataset, comparing names and shapes only (a memory-mapped file stays on disk)."""
    here, there = ({name: tuple(tensor.shape) for name, tensor in state.items()} for state in (wanted, saved))
    differ = sorted(name for name in here.keys() | there.keys() if here.get(name) != there.get(name))
    if differ:
        raise UserError(
            f"The weights in {path} belong to another network than the one built from this config ({len(differ)} tensors "
            f"differ, e.g. {differ[0]}: {there.get(differ[0], 'absent')} in the file, {here.get(differ[0], 'absent')} here): {advice}."
        )


def load_weights(module: Module, checkpoint: dict[str, Any], path: str | Path) -> None:
    check_same_network(module.state_dict(), checkpoint["state_dict"], path, f"evaluate it {AS_TRAINED}")
    module.load_state_dict(checkpoint["state_dict"])


def check_resumable(choices: dict[str, Any], module: Module, checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse to continue a checkpoint of another network or dataset than this run's conf/ `choices`."""
    advice = f"resume it {AS_TRAINED}, or start a new run without ckpt_path"
    stored = checkpoint[EXPERIMENT_KEY]["choices"]
    for group in ("model", "data"):
        if group in stored and group in choices and stored[group] != choices[group]:
            raise UserError(
                f"{path} was trained with {group}={stored[group]}, this run has {group}={choices[group]}: {advice}."
            )
    check_same_network(module.state_dict(), checkpoint["state_dict"], path, advice)


def atomic_write_bytes(data: bytes | Callable[[BinaryIO], Any], path: str | os.PathLike) -> None:
    """replace_whole, first removing what an earlier, killed write to `path` left behind (replace_whole's names)."""
    for stale in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        stale.unlink(missing_ok=True)
    replace_whole(path, data)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic local writes: Lightning stages in the system temp folder, whose move to another disk a kill truncates."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with writing(f"the checkpoint {path}"):  # one that fails leaves the checkpoints saved before as they were
            try:
                atomic_write_bytes(lambda file: torch.save(checkpoint, file), path)
            except RuntimeError as error:  # torch's writer found a short write (a full disk)
                free = shutil.disk_usage(Path(path).parent).free // 1024
                raise OSError(
                    f"the write stopped short: it needs more than the {free} KiB free on that disk"
                ) from error
