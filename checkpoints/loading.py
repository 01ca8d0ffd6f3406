"""Loading checkpoints written by train.py without executing anything stored in them."""

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule
from omegaconf import DictConfig

from checkpoints.trusted_config import REBUILT_GROUPS, check_stored_config
from user_errors import UserError

# where callbacks/checkpointing.py stores the run's composed config in every checkpoint of train.py
RUN_CONFIG_KEY = "run_config"


def read_weights_only(path: str | Path, setting: str, expected: str, mmap: bool = False) -> Any:
    """torch.load(path, weights_only=True): tensors and plain data, no code; each way it can fail is one
    sentence telling the user to pass `setting`=`expected` instead. mmap=True leaves the tensors on disk
    until they are used."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No checkpoint file at {path}: pass {setting}={expected}.")
    not_a_checkpoint = f"{path} is truncated or not a PyTorch checkpoint; pass {setting}={expected}."
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one lacks its directory
        raise UserError(not_a_checkpoint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        blocked = next(
            (line.strip() for line in str(error).splitlines() if "GLOBAL" in line),
            "objects other than tensors and plain data",
        )
        raise UserError(
            f"Refusing to load {path}: loading it would run code it names ({blocked}); pass {setting}={expected}."
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise UserError(not_a_checkpoint) from error


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """The contents of a checkpoint of train.py, read with weights_only=True; refused if anything stored in it
    names code that this installation's conf/ does not (checkpoints/trusted_config.py), since its run config gets rebuilt."""
    checkpoint = read_weights_only(path, "ckpt_path", "<run dir>/checkpoints/<name>.ckpt of a run of train.py", mmap)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or RUN_CONFIG_KEY not in checkpoint:
        raise UserError(f"{path} is not a checkpoint written by train.py (it lacks the weights or the run's config).")
    check_stored_config(checkpoint, path, {(RUN_CONFIG_KEY, group): group for group in REBUILT_GROUPS})
    return checkpoint


EVALUATE_ADVICE = "evaluate it with the model and data it was trained with (leave out model=/data= overrides)"


def load_weights(
    module: LightningModule, checkpoint: dict[str, Any], path: str | Path, advice: str = EVALUATE_ADVICE
) -> None:
    """Copy the checkpoint's weights into `module`, refusing weights of another network or dataset."""
    try:
        missing, unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False)
    except RuntimeError as error:  # same names, other shapes: e.g. another number of classes or channels
        mismatch = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise UserError(
            f"The weights in {path} have other shapes than the network built from this config ({mismatch}): {advice}."
        ) from error
    if missing or unexpected:
        raise UserError(
            f"The weights in {path} belong to another network than the one built from this config "
            f"({len(missing)} missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]}): {advice}."
        )


def check_resumable(cfg: DictConfig, module: LightningModule, checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse to continue a checkpoint with another network or dataset than the one it was trained on.

    Only names and shapes are compared: the weights themselves are loaded once, by Lightning's fit (read the
    checkpoint with mmap=True and its tensors are not read from disk here at all)."""
    advice = "resume it with the model and data it was trained with (leave out model=/data= overrides), or start a new run without ckpt_path"
    stored = checkpoint[RUN_CONFIG_KEY]
    for group in ("model", "data"):
        trained_with, requested = stored.get(group, {}).get("_target_"), cfg[group]._target_
        if trained_with != requested:
            raise UserError(f"{path} was trained with {group} {trained_with}, this run builds {requested}: {advice}.")
    # datamodules/mnist.py serves three datasets: the option that picks one (MNIST when a config leaves it out)
    trained_on = stored.get("data", {}).get("torchvision_dataset") or "MNIST"
    requested = cfg.data.get("torchvision_dataset") or "MNIST"
    if trained_on != requested:
        raise UserError(f"{path} was trained on {trained_on}, this run reads {requested}: {advice}.")
    expected, saved = module.state_dict(), checkpoint["state_dict"]
    missing, unexpected = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
    if missing or unexpected:
        raise UserError(
            f"The weights in {path} belong to another network than the one built from this config "
            f"({len(missing)} missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]}): {advice}."
        )
    for name, tensor in expected.items():
        if saved[name].shape != tensor.shape:
            raise UserError(
                f"The weights in {path} have other shapes than the network built from this config (size mismatch for "
                f"{name}: {tuple(saved[name].shape)} in the checkpoint, {tuple(tensor.shape)} here): {advice}."
            )
