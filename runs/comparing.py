"""compare.py: two checkpoints or prediction files judged sample by sample (no library does), with a contact sheet."""

import copy
import math
from collections import Counter
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from omegaconf import DictConfig

from analysis.prediction_files import PREDICTION_FILE_SUFFIXES, read_predictions, write_csv
from checkpoints.loading import load_checkpoint
from runs.build import build_datamodule, build_loggers, evaluate, rebuild_config
from runs.config_check import check_config
from user_errors import UserError

FIX = "compare predictions of the same split of the same dataset (with checkpoints, pass split=val or split=test)"
# the contact sheet's sections: the flip, the side that is wrong (0: A, 1: B), the title
SECTIONS = (("right->wrong", 1, "A right, B wrong"), ("wrong->right", 0, "A wrong, B right"))
CELL_WIDTH, CELL_HEIGHT = 2.3, 2.9  # inches per image, wide enough for three caption lines of a class name


def short_name(name: str) -> str:
    """A class name cut to fit a caption (Tiny-ImageNet's words.txt names can be long lists of synonyms)."""
    return name if len(name) <= 24 else name[:23] + "…"


def read_side(cfg: DictConfig, side: str):
    """The prediction file given as `side`, or the checkpoint given, read and checked (not yet evaluated)."""
    path = Path(cfg[side])
    return read_predictions(path) if path.suffix in PREDICTION_FILE_SUFFIXES else load_checkpoint(path, mmap=True)


def evaluated(cfg: DictConfig, side: str):
    """The predictions of the checkpoint given as `side`, evaluated into <run>/<side>."""
    evaluation = copy.deepcopy(cfg)
    evaluation.ckpt_path, evaluation.splits = str(cfg[side]), [cfg.split]
    evaluation.paths.output_dir = str(Path(cfg.paths.output_dir) / side)
    evaluate(evaluation)
    (written,) = Path(evaluation.paths.output_dir, "predictions").glob(f"{cfg.split}-*.csv")
    return read_predictions(written)


def check_comparable(a, b) -> None:
    a_labels, b_labels = ({row["index"]: row["label"] for row in side.rows} for side in (a, b))
    if (a.dataset, a.split, a_labels) != (b.dataset, b.split, b_labels):
        raise UserError(
            f"A ({a.path}) holds {a.split} predictions of {a.dataset} and B ({b.path}) holds {b.split} predictions of {b.dataset}, "
            f"not of the same samples with the same true labels (another validation split, or a limited evaluation): {FIX}."
        )
    if "" in a_labels.values():
        raise UserError(
            f"{a.path} has no true labels (predictions of an unlabeled split), so no accuracy can be compared: {FIX}."
        )


def flip(p) -> str:
    return "right->wrong" if p[0]["correct"] == "1" else "wrong->right" if p[1]["correct"] == "1" else "both wrong"


def describe(predictions) -> str:
    name, epoch = Path(predictions.meta.get("checkpoint") or predictions.path).name, predictions.meta.get("epoch")
    return name if epoch is None else f"{name} (epoch {epoch})"


def report(a, b, pairs: list, max_listed: int) -> list[str]:
    """What compare.py prints: accuracies, agreement, flips, then the samples judged differently."""
    n, flips, agree = len(a.rows), Counter(map(flip, pairs)), len(a.rows) - len(pairs)
    lines = []
    for side, predictions in (("A", a), ("B", b)):
        right = sum(row["correct"] == "1" for row in predictions.rows)
        lines.append(f"{side}: {describe(predictions)}  top-1 {100 * right / n:.2f}% ({right}/{n})")
    lines.append(
        f"on {n} {a.split} samples: agreement {100 * agree / n:.2f}% ({agree}/{n}); {len(pairs)} judged differently: "
        f"{flips['right->wrong']} right->wrong, {flips['wrong->right']} wrong->right, {flips['both wrong']} wrong in both"
    )
    lines += [f"{'index':>7}  {'true':<20} {'A predicts':<26} {'B predicts':<26} change"] if pairs else []
    for a_row, b_row in pairs[:max_listed]:
        a_says, b_says = (f"{short_name(row['pred1_name'])} ({float(row['prob1']):.2f})" for row in (a_row, b_row))
        lines.append(
            f"{a_row['index']:>7}  {short_name(a_row['label_name']):<20} {a_says:<26} {b_says:<26} {flip((a_row, b_row))}"
        )
    if len(pairs) > max_listed:
        lines.append(f"... and {len(pairs) - max_listed} more (all of them are in disagreements.csv)")
    return lines


def sheet_selection(pairs: list, num_images: int) -> dict[str, list]:
    """Up to num_images flips, half of each direction, the wrong model's most confident mistakes first."""
    first, second = (  # sorted keeps the pairs' index order among equal probabilities
        sorted((p for p in pairs if flip(p) == change), key=lambda p, wrong=wrong: -float(p[wrong]["prob1"]))
        for change, wrong, _ in SECTIONS
    )
    take = min(len(first), max(num_images // 2, num_images - len(second)))
    return {"right->wrong": first[:take], "wrong->right": second[: num_images - take]}


def contact_sheet(a, b, pairs: list, selection: dict[str, list], images: dict, columns: int = 4) -> Figure:
    """Each section's images `columns` to a row, each under its caption: matplotlib, as make_grid draws no captions."""
    sections = [
        (change, "AB"[wrong], title, selection[change]) for change, wrong, title in SECTIONS if selection[change]
    ]
    rows = [math.ceil(len(items) / columns) for *_, items in sections]
    height = sum(rows) * CELL_HEIGHT + 0.5 * len(sections) + 0.8
    figure, totals = Figure(figsize=(columns * CELL_WIDTH, height), layout="constrained"), Counter(map(flip, pairs))
    subfigures = figure.subfigures(len(sections), 1, height_ratios=rows, squeeze=False)[:, 0]
    for subfigure, section_rows, (change, wrong, title, items) in zip(subfigures, rows, sections):
        for position, pair in enumerate(items):
            axes = subfigure.add_subplot(section_rows, columns, position + 1)
            # (C, H, W) uint8 as (H, W, 3): a grayscale image's one channel as gray
            axes.imshow(images[pair[0]["index"]].permute(1, 2, 0).expand(-1, -1, 3), interpolation="nearest")
            caption = [f"#{pair[0]['index']} true: {short_name(pair[0]['label_name'])}"] + [
                f"{side}: {short_name(row['pred1_name'])} {float(row['prob1']):.2f} {'✓' if row['correct'] == '1' else '✗'}"
                for side, row in zip("AB", pair)
            ]
            axes.set_title("\n".join(caption), fontsize=9, loc="left")
            axes.axis("off")
        heading = f"{title} ({change}): {len(items)} of {totals[change]}, {wrong}'s most confident mistakes first"
        subfigure.suptitle(heading, fontsize=10, fontweight="bold")
    figure.suptitle(
        f"A = {describe(a)}, B = {describe(b)}\n{len(pairs)} {a.split} samples judged differently: "
        f"{totals['right->wrong']} right->wrong, {totals['wrong->right']} wrong->right, {totals['both wrong']} wrong in both (not shown)\n"
        "each caption: index, true class, each checkpoint's top-1 prediction and its probability (✓ right, ✗ wrong)",
        fontsize=9,
    )
    return figure


def compare(cfg: DictConfig) -> None:
    if cfg.split not in ("val", "test"):
        raise UserError(f"split must be val or test, not {cfg.split!r}.")
    read = {side: read_side(cfg, side) for side in "ab"}  # both refused before either checkpoint is evaluated
    a, b = (evaluated(cfg, side) if isinstance(read[side], dict) else read[side] for side in "ab")
    check_comparable(a, b)
    b_rows = {row["index"]: row for row in b.rows}
    pairs = [(row, b_rows[row["index"]]) for row in sorted(a.rows, key=lambda row: int(row["index"]))]
    pairs = [(a_row, b_row) for a_row, b_row in pairs if a_row["pred1"] != b_row["pred1"]]
    print("\n".join(report(a, b, pairs, cfg.max_listed)))
    output_dir = Path(cfg.paths.output_dir)
    top1, shared = ("pred1", "pred1_name", "prob1"), ["index", "source", "label", "label_name"]
    header = [*shared, *(f"{side}_{key.replace('1', '')}" for side in "ab" for key in top1), "change"]
    rows = ([*map(pair[0].get, shared), *(row[key] for row in pair for key in top1), flip(pair)] for pair in pairs)
    write_csv(output_dir / "disagreements.csv", header, rows)
    selection = sheet_selection(pairs, cfg.num_images)
    shown = [a_row["index"] for items in selection.values() for a_row, _ in items]
    if not shown:
        return
    data_cfg, _ = rebuild_config(cfg, a.meta["experiment"], a.path.with_suffix(".json"))
    check_config(data_cfg, groups=("data",))
    datamodule = build_datamodule(data_cfg)
    datamodule.setup("validate" if a.split == "val" else "test")
    dataset = datamodule.dataset(a.split)
    position = {str(index): position for position, index in enumerate(dataset.source_index.tolist())}
    if missing := [index for index in shown if index not in position]:
        raise UserError(
            f"The {a.split} split rebuilt from the prediction file's data config lacks samples {missing[:5]}: the dataset on disk has changed since the predictions were made."
        )
    images = dict(zip(shown, dataset.__getitems__([position[index] for index in shown])["image"]))
    figure = contact_sheet(a, b, pairs, selection, images)
    figure.savefig(output_dir / "contact_sheet.png", dpi=100)
    print(f"contact sheet of {len(shown)} disagreeing images: {output_dir / 'contact_sheet.png'}")
    for change, items in selection.items():
        print(
            f"  {change}, most confident mistake first: {' '.join('#' + row['index'] for row, _ in items) or '(none)'}"
        )
    for logger in build_loggers(cfg):
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure("compare/contact_sheet", figure)
            logger.finalize("success")
