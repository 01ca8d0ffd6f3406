"""Exporting a trained network for deployment, its preprocessing folded in, and running the exported files.

The exported model takes what the datasets serve: uint8 images (batch, C, H, W) in [0, 255], and returns
logits (batch, classes). The normalisation the datamodule applies on the device, (x / 255 - mean) / std,
is inside the model, so a deployment only has to bring an image to C x H x W (the contract JSON beside
the file says how). The batch dimension is dynamic in every format.

Formats, with torch's current APIs:
- torch_export: torch.export.export + torch.export.save (.pt2), loaded with torch.export.load.
- onnx: torch.onnx.export(dynamo=True) (.onnx), run with onnxruntime; needs onnx, onnxscript, onnxruntime.
- torchscript: torch.jit.trace (.ts), loaded with torch.jit.load, also from C++ (libtorch). TorchScript
  is deprecated in favour of torch.export, and a trace records one path through the code: fine for
  networks without data-dependent control flow (all of ours); the export is verified on another batch size.
"""

import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from user_errors import UserError

SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "torch_export": ".pt2"}
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INPUT_NAME, OUTPUT_NAME = "images", "logits"
MAX_IMAGE_SIDE = 4096


class NormalizedNet(nn.Module):
    """The network with the datamodule's normalisation in front: uint8 (B, C, H, W) images -> logits."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        mean, std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        # (x / 255 - mean) / std as one multiply-add, as ImageDataModule.normalize computes it
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -mean / std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.to(torch.float32) * self.scale + self.shift)


def check_format(name: str) -> None:
    if name not in SUFFIXES:
        raise UserError(f"format must be one of {', '.join(SUFFIXES)}, not {name!r}.")
    if name == "onnx":
        missing = [package for package in ONNX_PACKAGES if importlib.util.find_spec(package) is None]
        if missing:
            raise UserError(
                f"format=onnx needs the packages {', '.join(ONNX_PACKAGES)} and {', '.join(missing)} is not installed: pip install 'classic-dl[export]' (or pip install {' '.join(missing)})."
            )


def export(model: NormalizedNet, example: torch.Tensor, file_format: str, path: Path) -> None:
    """Write `model` (in eval mode) to `path`, traced on `example` (uint8 images) with a dynamic batch dimension."""
    model.eval()
    batch = torch.export.Dim("batch")
    if file_format == "torch_export":
        torch.export.save(torch.export.export(model, (example,), dynamic_shapes=({0: batch},)), path)
    elif file_format == "onnx":
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            external_data=False,
            verbose=False,
        )
    else:
        with torch.no_grad():
            torch.jit.trace(model, (example,)).save(str(path))


def load_exported(path: Path, file_format: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from uint8 images (B, C, H, W) to logits, running the exported file with its own runtime."""
    if file_format == "torch_export":
        program = torch.export.load(path).module()
        return lambda images: _no_grad(program, images)
    if file_format == "torchscript":
        script = torch.jit.load(str(path), map_location="cpu")
        return lambda images: _no_grad(script, images)
    import onnxruntime  # optional: check_format said which package to install

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.cpu().numpy()})[0])


def _no_grad(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images)


def write_contract(path: Path, contract: dict[str, Any]) -> None:
    path.write_text(json.dumps(contract, indent=2) + "\n")


def read_contract(model_path: Path) -> dict[str, Any]:
    """The contract JSON written beside an exported model (same name, .json)."""
    contract_path = model_path.with_suffix(".json")
    if not model_path.is_file():
        raise UserError(f"No exported model at {model_path}: pass exported=PATH of a file written by export.py.")
    if not contract_path.is_file():
        raise UserError(
            f"{model_path} has no preprocessing contract {contract_path.name} beside it: export it again with export.py, which writes both."
        )
    try:
        contract = json.loads(contract_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise UserError(
            f"{contract_path} is not valid JSON ({error.__class__.__name__}): export the model again with export.py."
        ) from error
    if not isinstance(contract, dict) or contract.get("format") not in SUFFIXES:
        raise UserError(
            f"{contract_path} names no known format (format: {contract.get('format') if isinstance(contract, dict) else None!r}): export the model again with export.py."
        )
    if SUFFIXES[contract["format"]] != model_path.suffix:  # the contract does not choose which loader opens the file
        raise UserError(
            f"{contract_path} says {contract['format']}, whose files end in {SUFFIXES[contract['format']]}, but the model is {model_path.name}: export the model again with export.py."
        )
    shape = contract.get("input", {}).get("shape") if isinstance(contract.get("input"), dict) else None
    names = contract.get("class_names")
    if not (
        isinstance(shape, list)
        and len(shape) == 4
        and shape[1] in (1, 3)
        and all(isinstance(side, int) and 0 < side <= MAX_IMAGE_SIDE for side in shape[2:])
    ):
        raise UserError(
            f"{contract_path} gives no input shape [batch, 1 or 3, height, width] (input.shape: {str(shape)[:60]}): export the model again with export.py."
        )
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(name, str) for name in names)):
        raise UserError(
            f"{contract_path} gives no list of class names (class_names: {str(names)[:60]}): export the model again with export.py."
        )
    return contract
