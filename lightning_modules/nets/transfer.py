"""Weights for fine-tuning: where they come from (torchvision's weights API, a file) and how they are copied
into a network whose stem and head were shaped for another dataset."""

import pickle
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import get_model_weights

from checkpoints.loading import read_weights_only
from user_errors import UserError

# A checkpoint of train.py stores the network as ImageClassifier.net; torchvision-backed networks keep
# torchvision's model in their `model` attribute, so its weights are the keys below this prefix.
CHECKPOINT_PREFIX = "net.model."


def imagenet_state_dict(arch: str) -> dict[str, Tensor]:
    """The default ImageNet weights of torchvision's `arch`, from the torch hub cache or downloaded into it."""
    weights = get_model_weights(arch).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    try:
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        reason = f"{error.__class__.__name__}: {' '.join(str(error).split())}"
        if cached.is_file():
            raise UserError(
                f"The cached ImageNet weights {cached} of {arch} cannot be read ({reason}); delete the file so that it is downloaded again, or pass model.weights_path=FILE."
            ) from error
        raise UserError(
            f"The ImageNet weights of {arch} are not in the torch cache ({cached}) and could not be downloaded ({reason}): "
            f"copy {weights.url} there (TORCH_HOME moves the cache) or pass model.weights_path=FILE."
        ) from error


def read_weights_file(path: str) -> dict[str, Tensor]:
    """A state dict saved with torch.save, or the torchvision network's weights from a checkpoint of train.py."""
    expected = "a state dict saved with torch.save(model.state_dict()) or a checkpoint of train.py"
    content = read_weights_only(path, "model.weights_path", expected)
    if isinstance(content, dict) and "state_dict" in content:
        state = {
            key.removeprefix(CHECKPOINT_PREFIX): value
            for key, value in content["state_dict"].items()
            if key.startswith(CHECKPOINT_PREFIX)
        }
        if not state:
            raise UserError(
                f"The checkpoint {path} holds no torchvision-backed network (no '{CHECKPOINT_PREFIX}*' weights): pass model.weights_path={expected} of the same architecture."
            )
        return state
    if not isinstance(content, dict) or not content or not all(isinstance(value, Tensor) for value in content.values()):
        raise UserError(
            f"{path} holds neither a state dict nor a checkpoint of train.py: pass model.weights_path={expected}."
        )
    return content


def fit_input_channels(weight: Tensor, in_channels: int) -> Tensor | None:
    """A first-convolution weight (out, C, kh, kw) for `in_channels` instead of C, or None when there is no sensible one.

    RGB -> grey sums the colour filters: a grey image x seen as (x, x, x) gives exactly the same response.
    Grey -> RGB spreads the filter over the channels: an RGB image gives the response to its channel mean.
    """
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if weight.shape[1] == 1:
        return weight.expand(-1, in_channels, -1, -1) / in_channels
    return None


def copy_transferable_weights(
    model: nn.Module,
    source: dict[str, Tensor],
    origin: str,
    head: str,
    stem: str,
    new_stem_geometry: bool,
    unused: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """Copy `source` into `model`, all but the head, which keeps its fresh initialisation; returns the prefixes
    of the parts left fresh (the head, and the stem when the network's is a small stem, `new_stem_geometry`,
    that the source's does not fit).

    The stem convolution `stem` is fitted to the input channels; source tensors under the prefixes in `unused`
    (parts the network was built without) are left out. Every other tensor must be present with the same
    shape: weights of another architecture are refused.
    """
    target = model.state_dict()
    merged, problems, stem_left_fresh = {}, [], False
    for key, value in target.items():
        if key.startswith(f"{head}."):
            continue
        weight = source.get(key)
        if (
            weight is not None
            and key == f"{stem}.weight"
            and weight.shape != value.shape
            and weight.shape[2:] == value.shape[2:]
        ):
            weight = fit_input_channels(weight, value.shape[1])
        if weight is not None and weight.shape == value.shape:
            merged[key] = weight
        elif new_stem_geometry and key.startswith(f"{stem}."):
            stem_left_fresh = True
        elif key not in source:
            problems.append(f"{key} missing")
        else:
            problems.append(f"{key} has shape {tuple(source[key].shape)}, the network {tuple(value.shape)}")
    problems += [
        f"{key} unexpected" for key in sorted(source) if key not in target and not key.startswith((f"{head}.", *unused))
    ]
    if problems:
        raise UserError(
            f"The weights from {origin} do not fit this network ({len(problems)} problems, e.g. {'; '.join(problems[:2])}): "
            "use weights of the same architecture, with model.small_input_stem set as when they were trained."
        )
    model.load_state_dict(merged, strict=False)
    return (f"{head}.", f"{stem}.") if stem_left_fresh else (f"{head}.",)


def transfer_summary(
    model: nn.Module, origin: str, fresh: tuple[str, ...], stem: str, stem_channels: tuple[int, int] | None
) -> str:
    """One line saying what fine-tuning starts from: the source, the parts left fresh, what is frozen, the parameter counts.

    stem_channels: (source's, network's) input channels when the stem's loaded weight was fitted to other channels."""
    parts = [(name, list(child.parameters())) for name, child in model.named_children()]
    frozen = [
        name
        for name, parameters in parts
        if parameters and not any(parameter.requires_grad for parameter in parameters)
    ]
    partly = [
        name
        for name, parameters in parts
        if any(p.requires_grad for p in parameters) and not all(p.requires_grad for p in parameters)
    ]
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in model.parameters())
    fitted = (
        f"; {stem} loaded with its {stem_channels[0]} input channels fitted to {stem_channels[1]}"
        if stem_channels
        else ""
    )
    frozen_text = ", ".join(frozen + [f"{name} (partly)" for name in partly]) or "nothing"
    return (
        f"Transfer learning: weights from {origin}; replaced (freshly initialised): {', '.join(prefix.rstrip('.') for prefix in fresh)}{fitted}; "
        f"frozen: {frozen_text}; parameters: {trainable:,} trainable, {total - trainable:,} frozen"
    )
