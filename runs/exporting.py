"""export.py: a checkpoint exported with its input contract, verified on real images against the eager network."""

import json
from pathlib import Path

import torch
from omegaconf import DictConfig

from datamodules.image_files import PIL_MODES
from deployment.exporting import INPUT_NAME, OUTPUT_NAME, SUFFIXES, NormalizedNet, check_format, export, load_exported
from runs.build import rebuild_from_checkpoint
from user_errors import UserError


def export_checkpoint(cfg: DictConfig) -> dict:
    check_format(cfg.format)
    if cfg.verify_images < 3:
        raise UserError(
            f"verify_images must be at least 3 (the export is traced on 2 images and checked on a larger batch), got {cfg.verify_images}."
        )
    cfg, checkpoint, datamodule, module, _ = rebuild_from_checkpoint(cfg)
    module.eval()
    datamodule.setup("validate")
    val = datamodule.dataset("val")
    images = val.__getitems__(list(range(min(cfg.verify_images, len(val)))))["image"]
    path = Path(cfg.paths.output_dir) / f"model{SUFFIXES[cfg.format]}"
    try:  # traced on 2 images (torch.export specialises a batch of 1), verified on more: a batch size baked in shows
        export(NormalizedNet(module.net, datamodule.mean, datamodule.std), images[:2], cfg.format, path)
    except Exception as error:  # torch's exporters raise many types; the first line names what they cannot handle
        reason = (str(error).strip().splitlines() or [error.__class__.__name__])[0]
        raise UserError(
            f"torch could not export {cfg.model._target_} as {cfg.format} ({reason}): try another format."
        ) from error
    with torch.no_grad():
        eager = module(datamodule.normalize(images))  # the path of training and eval.py
    difference = (load_exported(path, cfg.format)(images) - eager).abs().max().item()
    matches = difference <= cfg.tolerance
    channels, height, width = datamodule.input_shape
    contract = {
        "format": cfg.format,
        "file": path.name,
        "source_checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "epoch": checkpoint.get("epoch"),
        "model": cfg.model._target_,
        "data": cfg.data._target_,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", channels, height, width],
            "dtype": "uint8",
            "layout": "NCHW",
            "range": [0, 255],
        },
        "preprocessing": {
            "image_mode": PIL_MODES[channels],
            "resize": f"to {height}x{width} (height x width), PIL bilinear, the whole image",
            "normalization": "inside the model: (x / 255 - mean) / std per channel",
            "mean": list(datamodule.mean),
            "std": list(datamodule.std),
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", datamodule.num_classes],
            "dtype": "float32",
            "meaning": "logits; softmax gives class probabilities",
        },
        "class_names": list(datamodule.class_names),
        "verified": {
            "images": len(images),
            "split": "val",
            "max_abs_difference": difference,
            "tolerance": cfg.tolerance,
            "matches": matches,
        },
        "torch_version": torch.__version__,
    }
    path.with_suffix(".json").write_text(json.dumps(contract, indent=2) + "\n")
    print(f"exported {cfg.ckpt_path} as {cfg.format} to {path} (preprocessing contract {path.with_suffix('.json')})")
    if not matches:
        raise UserError(
            f"The {cfg.format} export's logits differ from the eager network's by up to {difference:.3g} on {len(images)} val images, "
            f"more than tolerance={cfg.tolerance}: this format does not reproduce the network; try another format (torch_export), or raise tolerance if the difference is acceptable."
        )
    print(
        f"verified on {len(images)} val images: max abs difference of the logits {difference:.3g} <= tolerance {cfg.tolerance}: the export matches the eager model."
    )
    return contract
