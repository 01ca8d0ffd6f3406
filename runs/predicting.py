"""Top-k predictions for a user's own images from a checkpoint or an exported model (predict.py)."""

import csv
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig

from analysis.prediction_files import as_spreadsheet_text
from datamodules.image_files import BadImageFile
from deployment.exporting import load_exported, read_contract
from deployment.image_input import image_files, load_as_input
from runs.evaluation import rebuild_from_checkpoint
from user_errors import UserError

Classifier = Callable[[torch.Tensor], torch.Tensor]  # uint8 images (B, C, H, W) -> logits


def from_checkpoint(cfg: DictConfig) -> tuple[Classifier, tuple[int, int, int], list[str]]:
    """The network of a checkpoint with its datamodule's normalisation, its input shape and class names."""
    _, _, datamodule, module, _ = rebuild_from_checkpoint(cfg)
    module.eval()

    def classify(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(datamodule.normalize(images))

    return classify, tuple(datamodule.input_shape), list(datamodule.class_names)


def from_export(path: Path) -> tuple[Classifier, tuple[int, int, int], list[str]]:
    """An exported model run by its own runtime; shape and class names from its contract (normalisation is inside)."""
    contract = read_contract(path)
    names = contract["class_names"]
    try:
        run = load_exported(path, contract["format"])
    except Exception as error:  # each runtime has its own errors for a file that is not its format
        raise UserError(
            f"{path} cannot be opened as a {contract['format']} model ({error.__class__.__name__}): export the model again with export.py."
        ) from error

    def classify(images: torch.Tensor) -> torch.Tensor:
        try:
            logits = run(images)
        except Exception as error:  # a model for another input than its contract says
            raise UserError(
                f"{path} cannot run on the input its contract {path.with_suffix('.json').name} describes ({error.__class__.__name__}): export the model again with export.py."
            ) from error
        if logits.ndim != 2 or logits.shape[1] != len(names):
            raise UserError(
                f"{path} gives {tuple(logits.shape)} outputs but its contract names {len(names)} classes: export the model again with export.py."
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

    inputs, readable, failed = [], [], []
    for path in files:
        try:
            inputs.append(load_as_input(path, input_shape))
            readable.append(path)
        except BadImageFile as error:
            failed.append(path)
            print(f"error: {error}; the other images are still predicted.", file=sys.stderr)
    rows = []
    for start in range(0, len(inputs), cfg.batch_size):
        probabilities = torch.softmax(classify(torch.stack(inputs[start : start + cfg.batch_size])).float(), dim=1)
        top_probabilities, top_classes = probabilities.topk(top_k, dim=1)
        for path, probs, classes in zip(readable[start:], top_probabilities.tolist(), top_classes.tolist()):
            print(f"{path}:")
            for rank, (probability, label) in enumerate(zip(probs, classes), start=1):
                print(f"  {rank}. {100 * probability:6.2f}%  {class_names[label]}")
            rows.append(
                [str(path)]
                + [
                    value
                    for label, probability in zip(classes, probs)
                    for value in (label, class_names[label], f"{probability:.6f}")
                ]
            )
    write_rows(Path(cfg.paths.output_dir) / "predictions.csv", rows, top_k)
    if failed:
        raise UserError(
            f"{len(failed)} of {len(files)} images could not be read (named above); the other {len(readable)} were predicted."
        )


def write_rows(path: Path, rows: list[list], top_k: int) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["file"] + [f"{column}{rank}" for rank in range(1, top_k + 1) for column in ("pred", "pred_name", "prob")]
        )
        writer.writerows(as_spreadsheet_text(row) for row in rows)
