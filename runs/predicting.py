"""predict.py: the top-k classes of a user's own images, from a checkpoint or an exported model."""

import csv
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig

from analysis.prediction_files import as_spreadsheet_text
from datamodules.image_files import BadImageFile
from deployment.exporting import AGAIN, image_files, load_as_input, load_exported, read_contract
from runs.build import rebuild_from_checkpoint
from user_errors import UserError

Classifier = Callable[[torch.Tensor], torch.Tensor]  # uint8 images (B, C, H, W) -> logits


def from_checkpoint(cfg: DictConfig) -> tuple[Classifier, tuple[int, int, int], list[str]]:
    _, _, datamodule, module, _ = rebuild_from_checkpoint(cfg)
    module.eval()
    return lambda images: module(datamodule.normalize(images)), datamodule.input_shape, datamodule.class_names


def from_export(path: Path) -> tuple[Classifier, tuple[int, int, int], list[str]]:
    """An exported model run by its own runtime; input shape and class names from its contract."""
    contract = read_contract(path)
    names = contract["class_names"]
    try:
        run = load_exported(path, contract["format"])
    except Exception as error:  # each runtime has its own errors for a file that is not its format
        raise UserError(
            f"{path} cannot be opened as a {contract['format']} model ({error.__class__.__name__}): {AGAIN}."
        ) from error

    def classify(images: torch.Tensor) -> torch.Tensor:
        try:
            logits = run(images)
        except Exception as error:  # a model for another input than its contract says
            raise UserError(
                f"{path} cannot run on the input its contract {path.with_suffix('.json').name} describes ({error.__class__.__name__}): {AGAIN}."
            ) from error
        if logits.ndim != 2 or logits.shape[1] != len(names):
            raise UserError(
                f"{path} gives {tuple(logits.shape)} outputs but its contract names {len(names)} classes: {AGAIN}."
            )
        return logits

    return classify, tuple(contract["input"]["shape"][1:]), names


def predict(cfg: DictConfig) -> None:
    if bool(cfg.ckpt_path) == bool(cfg.exported):
        raise UserError(
            "Give either ckpt_path=PATH (a checkpoint of train.py) or exported=PATH (a model written by export.py), not both or neither."
        )
    files = image_files(list(cfg.images))
    if not files:
        raise UserError(
            "No images given: name image files or folders, e.g. python predict.py ckpt_path=PATH digit.png photos/."
        )
    classify, input_shape, class_names = from_export(Path(cfg.exported)) if cfg.exported else from_checkpoint(cfg)
    top_k = min(cfg.top_k, len(class_names))
    readable = []
    for path in files:
        try:
            readable.append((path, load_as_input(path, input_shape)))
        except BadImageFile as error:
            print(f"error: {error}; the other images are still predicted.", file=sys.stderr)
    rows = []
    for start in range(0, len(readable), cfg.batch_size):
        batch = readable[start : start + cfg.batch_size]
        with torch.no_grad():
            logits = classify(torch.stack([image for _, image in batch]))
        for (path, _), probs, labels in zip(batch, *torch.softmax(logits.float(), dim=1).topk(top_k, dim=1)):
            print(f"{path}:")
            rows.append([str(path)])
            for rank, (probability, label) in enumerate(zip(probs.tolist(), labels.tolist()), start=1):
                print(f"  {rank}. {100 * probability:6.2f}%  {class_names[label]}")
                rows[-1] += [label, class_names[label], f"{probability:.6f}"]
    with (Path(cfg.paths.output_dir) / "predictions.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["file"] + [f"{key}{rank}" for rank in range(1, top_k + 1) for key in ("pred", "pred_name", "prob")]
        )
        writer.writerows(as_spreadsheet_text(row) for row in rows)
    if len(readable) < len(files):
        raise UserError(
            f"{len(files) - len(readable)} of {len(files)} images could not be read (named above); the other {len(readable)} were predicted."
        )
