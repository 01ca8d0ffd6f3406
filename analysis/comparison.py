"""Comparing two prediction files of the same samples: accuracies, agreement, flips, and the samples judged differently."""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from analysis.figures import CELL_HEIGHT, CELL_WIDTH, draw_captioned_grid, short_name
from analysis.prediction_files import Predictions, as_spreadsheet_text
from datamodules.base import ImageDataModule
from user_errors import UserError


@dataclass
class Disagreement:
    """A sample whose top-1 prediction differs between A and B."""

    index: int
    source: str
    label_name: str
    a: dict[str, str]
    b: dict[str, str]

    @property
    def change(self) -> str:
        a_right, b_right = self.a["correct"] == "1", self.b["correct"] == "1"
        return "right->wrong" if a_right else "wrong->right" if b_right else "both wrong"


@dataclass
class Comparison:
    a: Predictions
    b: Predictions
    a_correct: int
    b_correct: int
    agreements: int
    disagreements: list[Disagreement]

    @property
    def samples(self) -> int:
        return len(self.a.rows)

    @property
    def right_to_wrong(self) -> int:
        return sum(item.change == "right->wrong" for item in self.disagreements)

    @property
    def wrong_to_right(self) -> int:
        return sum(item.change == "wrong->right" for item in self.disagreements)


def describe(predictions: Predictions) -> str:
    """Which weights made these predictions, in a few words: 'epoch002.ckpt (epoch 2)' or 'val-epoch002.csv (epoch 2)'."""
    name = Path(predictions.meta.get("checkpoint") or predictions.path).name
    epoch = predictions.meta.get("epoch")
    return name if epoch is None else f"{name} (epoch {epoch})"


def check_comparable(a: Predictions, b: Predictions) -> None:
    """Refuses predictions of different datasets, splits or samples, and unlabeled ones, with one sentence."""
    fix = "compare predictions of the same split of the same dataset (with checkpoints, pass split=val or split=test)"
    if (a.dataset, a.split) != (b.dataset, b.split):
        raise UserError(
            f"A ({a.path}) holds {a.split} predictions of {a.dataset} but B ({b.path}) holds {b.split} predictions of {b.dataset}: {fix}."
        )
    a_labels = {row["index"]: row["label"] for row in a.rows}
    b_labels = {row["index"]: row["label"] for row in b.rows}
    if a_labels.keys() != b_labels.keys():
        raise UserError(
            f"A ({a.path}) and B ({b.path}) hold predictions of different {a.split} samples ({len(a_labels.keys() - b_labels.keys())} only in A, "
            f"{len(b_labels.keys() - a_labels.keys())} only in B; another validation split or a limited evaluation): {fix}."
        )
    differing = next((index for index, label in a_labels.items() if label != b_labels[index]), None)
    if differing is not None:
        raise UserError(
            f"A ({a.path}) and B ({b.path}) give sample {differing} different true labels, so they come from different datasets: {fix}."
        )
    if any(label == "" for label in a_labels.values()):
        raise UserError(
            f"{a.path} has no true labels (predictions of an unlabeled split), so no accuracy can be compared: {fix}."
        )


def compare_predictions(a: Predictions, b: Predictions) -> Comparison:
    check_comparable(a, b)
    b_rows = {row["index"]: row for row in b.rows}
    disagreements = [
        Disagreement(int(row_a["index"]), row_a["source"], row_a["label_name"], row_a, b_rows[row_a["index"]])
        for row_a in a.rows
        if row_a["pred1"] != b_rows[row_a["index"]]["pred1"]
    ]
    return Comparison(
        a=a,
        b=b,
        a_correct=sum(row["correct"] == "1" for row in a.rows),
        b_correct=sum(row["correct"] == "1" for row in b.rows),
        agreements=len(a.rows) - len(disagreements),
        disagreements=sorted(disagreements, key=lambda item: item.index),
    )


def report(comparison: Comparison, max_listed: int) -> str:
    """The text compare.py prints: accuracies, agreement, flips, then the samples judged differently."""
    n = comparison.samples
    lines = [
        f"A: {describe(comparison.a)}  top-1 {100 * comparison.a_correct / n:.2f}% ({comparison.a_correct}/{n})",
        f"B: {describe(comparison.b)}  top-1 {100 * comparison.b_correct / n:.2f}% ({comparison.b_correct}/{n})",
        f"on {n} {comparison.a.split} samples: agreement {100 * comparison.agreements / n:.2f}% ({comparison.agreements}/{n}); "
        f"{len(comparison.disagreements)} judged differently: {comparison.right_to_wrong} right->wrong, "
        f"{comparison.wrong_to_right} wrong->right, {len(comparison.disagreements) - comparison.right_to_wrong - comparison.wrong_to_right} wrong in both",
    ]
    if comparison.disagreements:
        lines.append(f"{'index':>7}  {'true':<20} {'A predicts':<26} {'B predicts':<26} change")
    for item in comparison.disagreements[:max_listed]:
        a_says = f"{short_name(item.a['pred1_name'])} ({float(item.a['prob1']):.2f})"
        b_says = f"{short_name(item.b['pred1_name'])} ({float(item.b['prob1']):.2f})"
        lines.append(f"{item.index:>7}  {short_name(item.label_name):<20} {a_says:<26} {b_says:<26} {item.change}")
    if len(comparison.disagreements) > max_listed:
        lines.append(
            f"... and {len(comparison.disagreements) - max_listed} more (all of them are in disagreements.csv)"
        )
    return "\n".join(lines)


def write_disagreements(comparison: Comparison, path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "index",
                "source",
                "label",
                "label_name",
                "a_pred",
                "a_pred_name",
                "a_prob",
                "b_pred",
                "b_pred_name",
                "b_prob",
                "change",
            ]
        )
        for item in comparison.disagreements:
            writer.writerow(
                as_spreadsheet_text(
                    [item.index, item.source, item.a["label"], item.label_name]
                    + [
                        item.a["pred1"],
                        item.a["pred1_name"],
                        item.a["prob1"],
                        item.b["pred1"],
                        item.b["pred1_name"],
                        item.b["prob1"],
                        item.change,
                    ]
                )
            )


def sample_images(datamodule: ImageDataModule, split: str, indices: list[int]) -> torch.Tensor:
    """uint8 images (N, C, H, W) of the samples with these source indices (the files' `index` column)."""
    dataset = datamodule.dataset(split)
    position = {index: position for position, index in enumerate(dataset.source_index.tolist())}
    missing = [index for index in indices if index not in position]
    if missing:
        raise UserError(
            f"The {split} split rebuilt from the prediction file's data config lacks samples {missing[:5]}: the dataset on disk has changed since the predictions were made."
        )
    return dataset.__getitems__([position[index] for index in indices])["image"]


# the contact sheet's sections: the flips between A and B, each sorted by how sure the model that is wrong was
SHEET_SECTIONS = (("right->wrong", "b", "A right, B wrong"), ("wrong->right", "a", "A wrong, B right"))


def sheet_selection(comparison: Comparison, num_images: int) -> dict[str, list[Disagreement]]:
    """Up to num_images disagreements, half right->wrong and half wrong->right (a section with fewer leaves its
    room to the other), the most confident mistakes of each first: those say the most about what changed."""
    candidates = {}
    for change, wrong_side, _ in SHEET_SECTIONS:
        flips = [item for item in comparison.disagreements if item.change == change]
        candidates[change] = sorted(
            flips, key=lambda item, side=wrong_side: (-float(getattr(item, side)["prob1"]), item.index)
        )
    first, second = (change for change, _, _ in SHEET_SECTIONS)
    take_first = min(len(candidates[first]), max(num_images // 2, num_images - len(candidates[second])))
    take_second = min(len(candidates[second]), num_images - take_first)
    return {first: candidates[first][:take_first], second: candidates[second][:take_second]}


def contact_sheet(
    comparison: Comparison, selection: dict[str, list[Disagreement]], images: dict[int, torch.Tensor], columns: int = 4
) -> Figure:
    """The selected disagreements in a section per direction, each image captioned with its index, true class and
    both predictions with their confidence (✓ right, ✗ wrong)."""

    def says(row: dict[str, str]) -> str:
        return f"{short_name(row['pred1_name'])} {float(row['prob1']):.2f} {'✓' if row['correct'] == '1' else '✗'}"

    sections = [(change, title, selection[change]) for change, _, title in SHEET_SECTIONS if selection.get(change)]
    rows = [max(1, math.ceil(len(items) / columns)) for _, _, items in sections]
    figure = Figure(
        figsize=(columns * CELL_WIDTH, sum(rows) * CELL_HEIGHT + 0.5 * len(sections) + 0.8), layout="constrained"
    )
    totals = {
        change: sum(item.change == change for item in comparison.disagreements) for change, _, _ in SHEET_SECTIONS
    }
    for subfigure, (change, title, items) in zip(
        np.atleast_1d(figure.subfigures(len(sections), 1, height_ratios=rows)), sections
    ):
        captions = [
            f"#{item.index} true: {short_name(item.label_name)}\nA: {says(item.a)}\nB: {says(item.b)}" for item in items
        ]
        draw_captioned_grid(subfigure, torch.stack([images[item.index] for item in items]), captions, columns)
        wrong_one = "B" if change == "right->wrong" else "A"
        subfigure.suptitle(
            f"{title} ({change}): {len(items)} of {totals[change]}, {wrong_one}'s most confident mistakes first",
            fontsize=10,
            fontweight="bold",
        )
    both_wrong = len(comparison.disagreements) - sum(totals.values())
    figure.suptitle(
        f"A = {describe(comparison.a)}, B = {describe(comparison.b)}\n{len(comparison.disagreements)} {comparison.a.split} samples judged differently: "
        f"{totals['right->wrong']} right->wrong, {totals['wrong->right']} wrong->right, {both_wrong} wrong in both (not shown)\n"
        "each caption: index, true class, each checkpoint's top-1 prediction and its probability (✓ right, ✗ wrong)",
        fontsize=9,
    )
    return figure
