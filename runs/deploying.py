"""export.py (a checkpoint exported with its contract, verified against the eager network) and predict.py."""

import json
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig

from analysis.prediction_files import write_csv
from datamodules.image_files import PIL_MODES, BadImageFile, decode_image
from deployment.exporting import AGAIN, NormalizedNet, check_format, export, image_files, load_exported, read_contract
from runs.build import rebuild_from_checkpoint
from user_errors import UserError


def export_checkpoint(cfg: DictConfig) -> None:
    check_format(cfg.format)
    if cfg.verify_images < 3:
        raise UserError(
            f"verify_images must be at least 3 (the export is traced on 2 images and checked on a larger batch), got {cfg.verify_images}."
        )
    cfg, checkpoint, datamodule, module, _ = rebuild_from_checkpoint(cfg)
    datamodule.setup("validate")
    val = datamodule.dataset("val")
    images = val.__getitems__(list(range(min(cfg.verify_images, len(val)))))["image"]
    try:  # traced on 2 images (torch.export specialises a batch of 1), verified on more: a batch size baked in shows
        net = NormalizedNet(module.eval().net, datamodule.mean, datamodule.std)
        path = export(net, images[:2], cfg.format, cfg.paths.output_dir)
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
        "input": dict(
            name="images", shape=["batch", channels, height, width], dtype="uint8", layout="NCHW", range=[0, 255]
        ),
        "preprocessing": {
            "image_mode": PIL_MODES[channels],
            "resize": f"to {height}x{width} (height x width), PIL bilinear, the whole image",
            "normalization": "inside the model: (x / 255 - mean) / std per channel",
            "mean": list(datamodule.mean),
            "std": list(datamodule.std),
        },
        "output": dict(name="logits", shape=["batch", datamodule.num_classes], dtype="float32"),
        "class_names": list(datamodule.class_names),
        "verified": dict(
            images=len(images), split="val", max_abs_difference=difference, tolerance=cfg.tolerance, matches=matches
        ),
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


def predict(cfg: DictConfig) -> None:
    if bool(cfg.ckpt_path) == bool(cfg.exported):
        raise UserError(
            "Give either ckpt_path=PATH (a checkpoint of train.py) or exported=PATH (a model written by export.py), not both or neither."
        )
    if not (files := image_files(cfg.images)):
        raise UserError(
            "No images given: name image files or folders, e.g. python predict.py ckpt_path=PATH digit.png photos/."
        )
    if cfg.exported:  # normalisation inside; input shape and class names from its contract
        path = Path(cfg.exported)
        contract = read_contract(path)
        input_shape, class_names = contract["input"]["shape"][1:], contract["class_names"]
        try:
            classify = load_exported(path, contract["format"])
        except Exception as error:  # each runtime has its own errors for a file that is not its format
            raise UserError(
                f"{path} cannot be opened as a {contract['format']} model ({error.__class__.__name__}): {AGAIN}."
            ) from error
    else:
        _, _, datamodule, module, _ = rebuild_from_checkpoint(cfg)
        input_shape, class_names = datamodule.input_shape, datamodule.class_names
        classify = torch.no_grad()(lambda images: module.eval()(datamodule.normalize(images)))
    readable = []
    for file in files:
        try:
            readable.append((file, torch.tensor(decode_image(file, input_shape, resize=True))))
        except BadImageFile as error:
            print(f"error: {error}; the other images are still predicted.", file=sys.stderr)
    top_k, rows = min(cfg.top_k, len(class_names)), []
    for start in range(0, len(readable), cfg.batch_size):
        batch = readable[start : start + cfg.batch_size]
        try:  # classify runs under torch.no_grad, from a checkpoint or exported
            logits = classify(torch.stack([image for _, image in batch]))
            if logits.shape != (len(batch), len(class_names)):
                raise ValueError(f"{tuple(logits.shape)} logits for {len(batch)} images of {len(class_names)} classes")
        except Exception as error:  # an exported model for another input or output than its contract says
            if not cfg.exported:
                raise
            reason = " ".join(str(error).split())[:100] or error.__class__.__name__
            raise UserError(
                f"{path} does not run as its contract {path.with_suffix('.json').name} says ({reason}): {AGAIN}."
            ) from error
        for (file, _), probs, labels in zip(batch, *torch.softmax(logits.float(), dim=1).topk(top_k, dim=1)):
            print(f"{file}:")
            rows.append([str(file)])
            for rank, (probability, label) in enumerate(zip(probs.tolist(), labels.tolist()), start=1):
                print(f"  {rank}. {100 * probability:6.2f}%  {class_names[label]}")
                rows[-1] += [label, class_names[label], f"{probability:.6f}"]
    header = ["file"] + [f"{key}{rank}" for rank in range(1, top_k + 1) for key in ("pred", "pred_name", "prob")]
    write_csv(Path(cfg.paths.output_dir) / "predictions.csv", header, rows)
    if len(readable) < len(files):
        raise UserError(
            f"{len(files) - len(readable)} of {len(files)} images could not be read (named above); the other {len(readable)} were predicted."
        )
