"""Predict the class of image files: python predict.py ckpt_path=PATH IMAGE_OR_FOLDER [...] [top_k=5]

Also `exported=PATH` (a model.<onnx|ts|pt2> written by export.py) instead of ckpt_path, and `image=PATH`
(repeatable) or `images=[a.png,b.png]` instead of bare paths; a folder stands for the image files in it.
Any size or mode (grayscale, RGB, RGBA, palette; PNG, JPEG, ...) is brought to the network's input as
deployment/image_input.py says. Prints the top-k classes with their probabilities per image and writes them to
predictions.csv in this command's run directory. An image that cannot be read is named in one sentence on
stderr, the others are still predicted, and the command then exits with code 2.
"""

import csv
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from datamodules.image_files import BadImageFile
from deployment.exporting import load_exported, read_contract
from deployment.image_input import image_files, load_as_input
from runs.entry_points import exit_on_user_error, quiet_library_notices, quoted
from runs.evaluation import rebuild_from_checkpoint
from runs.run_dir import register_resolvers
from user_errors import UserError

Classifier = Callable[[torch.Tensor], torch.Tensor]  # uint8 images (B, C, H, W) -> logits


def from_checkpoint(cfg: DictConfig) -> tuple[Classifier, tuple[int, int, int], list[str]]:
    """The network of a checkpoint with its datamodule's normalisation, its input shape and class names."""
    _, _, datamodule, module = rebuild_from_checkpoint(cfg)
    module.eval()

    def classify(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(datamodule.normalize(images))

    return classify, tuple(datamodule.input_shape), list(datamodule.class_names)


def from_export(path: Path) -> tuple[Classifier, tuple[int, int, int], list[str]]:
    """An exported model run by its own runtime; shape and class names from its contract (normalisation is inside)."""
    contract = read_contract(path)
    return load_exported(path, contract["format"]), tuple(contract["input"]["shape"][1:]), contract["class_names"]


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
        writer.writerows(rows)


def gather_images(arguments: list[str]) -> list[str]:
    """Bare paths and `image=PATH` arguments (Hydra takes a key once) -> one `images=[...]` override, quoted for Hydra."""
    images, rest = [], []
    for argument in arguments:
        follows_a_flag = bool(rest) and rest[-1].startswith("-")  # e.g. the `job` of Hydra's `--cfg job`
        if argument.startswith("image="):
            images.append(argument.removeprefix("image="))
        elif "=" not in argument and not argument.startswith("-") and not follows_a_flag:
            images.append(argument)
        else:
            rest.append(argument)
    if not images:
        return rest
    return rest + [f"images=[{','.join(quoted(image) for image in images)}]"]


register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    quiet_library_notices()
    with exit_on_user_error():
        predict(cfg)


if __name__ == "__main__":
    sys.argv[1:] = gather_images(sys.argv[1:])
    main()
