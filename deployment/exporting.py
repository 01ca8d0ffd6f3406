"""Exported models through torch's own exporters, normalisation folded in, with a JSON contract no library writes."""

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
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
AGAIN = "export the model again with export.py"


class NormalizedNet(nn.Module):
    """uint8 images (B, C, H, W) -> logits: (x / 255 - mean) / std as one multiply-add, as ImageDataModule.normalize."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net, std = net, torch.tensor(std).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -torch.tensor(mean).view(1, -1, 1, 1) / std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.to(torch.float32) * self.scale + self.shift)


def check_format(name: str) -> None:
    if name not in SUFFIXES:
        raise UserError(f"format must be one of {', '.join(SUFFIXES)}, not {name!r}.")
    if missing := [package for package in ONNX_PACKAGES if name == "onnx" and not importlib.util.find_spec(package)]:
        raise UserError(
            f"format=onnx needs the packages {', '.join(ONNX_PACKAGES)} and {', '.join(missing)} is not installed: pip install 'classic-dl[export]' (or pip install {' '.join(missing)})."
        )


def export(model: nn.Module, example: torch.Tensor, file_format: str, folder: Path) -> Path:
    """`model` in eval mode, traced on `example` (uint8 images) with a dynamic batch dimension, as folder/model.<suffix>."""
    path, dynamic = Path(folder) / f"model{SUFFIXES[file_format]}", ({0: torch.export.Dim("batch")},)
    if file_format == "torch_export":
        torch.export.save(torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic), path)
    elif file_format == "onnx":
        names = {"input_names": ["images"], "output_names": ["logits"], "external_data": False}
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=True, dynamic_shapes=dynamic, **names)
    else:
        with torch.no_grad():
            torch.jit.trace(model.eval(), (example,)).save(str(path))
    return path


def load_exported(path: Path, file_format: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 images (B, C, H, W) -> logits, run by the exported file's own runtime."""
    if file_format == "onnx":
        import onnxruntime  # optional: check_format names the packages

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: torch.from_numpy(session.run(["logits"], {"images": images.cpu().numpy()})[0])
    loaded = torch.export.load(path).module() if file_format == "torch_export" else torch.jit.load(str(path), "cpu")
    return torch.no_grad()(loaded)


def read_contract(model_path: Path) -> dict[str, Any]:
    """The contract beside an exported model, checked; the model's suffix, never the contract, picks the runtime."""
    contract_path = model_path.with_suffix(".json")
    if not model_path.is_file():
        raise UserError(f"No exported model at {model_path}: pass exported=PATH of a file written by export.py.")
    if not contract_path.is_file():
        raise UserError(f"{model_path} has no preprocessing contract {contract_path.name} beside it: {AGAIN}.")
    try:
        contract = json.loads(contract_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise UserError(f"{contract_path} is not valid JSON ({error.__class__.__name__}): {AGAIN}.") from error
    contract = contract if isinstance(contract, dict) else {}
    file_format, shape, names = contract.get("format"), contract.get("input"), contract.get("class_names")
    shape = shape.get("shape") if isinstance(shape, dict) else None
    expected = {suffix: name for name, suffix in SUFFIXES.items()}.get(model_path.suffix)
    if expected is None or file_format != expected:
        kind = f"a file of format {expected!r}" if expected else "no file of export.py"
        raise UserError(f"{contract_path} says format {file_format!r}, but {model_path.name} is {kind}: {AGAIN}.")
    if not (isinstance(shape, list) and len(shape) == 4 and shape[1] in (1, 3)) or not all(
        isinstance(side, int) and 0 < side <= 4096 for side in shape[2:]
    ):
        raise UserError(
            f"{contract_path} gives no input shape [batch, 1 or 3, height, width] (input.shape: {str(shape)[:60]}): {AGAIN}."
        )
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(name, str) for name in names)):
        raise UserError(f"{contract_path} gives no list of class names (class_names: {str(names)[:60]}): {AGAIN}.")
    return contract


def image_files(paths: Sequence[str]) -> list[Path]:
    """The files named, a folder standing for the image files in it (sorted by name)."""
    return [
        file
        for path in map(Path, paths)
        for file in (sorted(path.iterdir()) if path.is_dir() else [path])
        if file == path or (file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES)
    ]
