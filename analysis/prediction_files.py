"""Per-sample prediction files: `<name>.csv`, one row per sample, and its `<name>.json` sidecar (docs/analysis.md)."""

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkpoints.loading import is_experiment_record
from user_errors import UserError, replace_whole

PREDICTION_FILE_SUFFIXES = (".csv", ".json")
# a spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...), =cmd|..., @SUM(...))
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SPLITS = ("val", "test", "predict")
REQUIRED = {"split", "index", "label", "label_name", "correct", "pred1", "pred1_name", "prob1"}
# the numeric columns: (type, empty allowed (unlabelled samples, predict's losses), upper bound); all are >= 0
NUMBERS = {"index": (int, False, math.inf), "pred": (int, False, math.inf), "label": (int, True, math.inf)}
NUMBERS |= {"correct": (int, True, math.inf), "prob": (float, False, 1.0), "loss": (float, True, math.inf)}


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """`header` and `rows` as CSV, replaced whole (readers and other writers run at once); text cells that a spreadsheet
    would run as a formula kept as text by a leading `'`."""
    escaped = ([f"'{c}" if isinstance(c, str) and c.startswith(FORMULA_STARTS) else c for c in row] for row in rows)
    text = io.StringIO()
    csv.writer(text).writerows([header, *escaped])
    replace_whole(path, text.getvalue().encode())


def markdown_rows(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines: the header, its rule, the rows; a cell's `|` escaped and its lines joined."""
    lines = (header, ["---"] * len(header), *rows)
    return ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in line) + " |" for line in lines]


@dataclass
class Predictions:
    """A prediction file read back: its sidecar's metadata and its rows (strings, as in the CSV)."""

    path: Path
    meta: dict[str, Any]
    rows: list[dict[str, str]]

    split = property(lambda self: self.meta["split"])
    dataset = property(lambda self: str(self.meta["experiment"]["choices"].get("data")))


def write_predictions(
    path, *, split, stage, index, label, loss, top_ids, top_probs, class_names, sources, epoch, checkpoint, experiment
) -> None:
    """The CSV and its JSON sidecar from arrays of the samples (label and loss None where unknown, top-k (N, k))."""
    ranks = range(1, top_ids.shape[1] + 1)
    predicted = [name for rank in ranks for name in (f"pred{rank}", f"pred{rank}_name", f"prob{rank}")]
    header = ["split", "index", "source", "label", "label_name", "correct", "loss", *predicted, "epoch", "checkpoint"]
    epoch_cell = "" if epoch is None else epoch
    rows = []
    for row, sample in enumerate(index):
        true = None if label is None else int(label[row])
        truth = ["", "", ""] if true is None else [true, class_names[true], int(top_ids[row, 0] == true)]
        top = [cell for i, p in zip(top_ids[row], top_probs[row]) for cell in (int(i), class_names[i], f"{p:.6g}")]
        # + 0.0 turns a loss of -0.0 into 0: "-0" would be escaped as a formula and refused on reading
        loss_cell = "" if loss is None else f"{float(loss[row]) + 0.0:.6g}"
        rows.append([split, int(sample), sources[row], *truth, loss_cell, *top, epoch_cell, checkpoint])
    write_csv(path, header, rows)
    meta = {"split": split, "stage": stage, "epoch": epoch, "checkpoint": checkpoint, "num_samples": len(index)}
    path.with_suffix(".json").write_text(json.dumps(meta | {"experiment": experiment}, indent=2))


def read_predictions(path: str | Path) -> Predictions:
    """A prediction file and its sidecar, checked cell by cell: a missing or foreign file is a UserError."""
    path, sidecar = Path(path).with_suffix(".csv"), Path(path).with_suffix(".json")  # either may be named
    if not path.is_file() or not sidecar.is_file():
        raise UserError(
            f"No prediction file at {path} with its sidecar {sidecar.name}: pass a <run dir>/predictions/*.csv written by train.py or eval.py (with its .json), or a checkpoint."
        )
    try:
        meta = json.loads(sidecar.read_text())
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        if not (
            isinstance(meta, dict) and meta.get("split") in SPLITS and is_experiment_record(meta.get("experiment"))
        ):
            raise ValueError("its sidecar records no split and experiment")
        if rows and not REQUIRED <= set(rows[0]):
            raise ValueError(f"its columns lack some of {sorted(REQUIRED)}")
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            if bad := [
                f"{column}={str(value)[:40]!r}" for column, value in row.items() if not well_formed(column, value)
            ]:
                raise ValueError(f"line {number}: {bad[0]}")
    except (ValueError, csv.Error, RecursionError) as error:  # JSON and Unicode errors are ValueErrors
        raise UserError(
            f"{path} or its sidecar {sidecar.name} is not a prediction file of train.py or eval.py ({error}): pass an unchanged one written by this version."
        ) from error
    return Predictions(path, meta, rows)


def well_formed(column: str | None, value: str | None) -> bool:
    """Numbers of their kind in the numeric columns (labels empty for unlabelled samples, losses for predict)."""
    if column is None or value is None:  # a row longer or shorter than the header
        return False
    kind = column.rstrip("0123456789") if column.startswith(("pred", "prob")) else column  # pred1 -> pred
    number, may_be_empty, high = NUMBERS.get(kind, (None, False, 0))
    try:
        return number is None or (may_be_empty and value == "") or 0 <= number(value) <= high
    except ValueError:
        return False
