"""Per-sample prediction files: `<name>.csv`, one row per sample, and `<name>.json`, where the rows come from.

The CSV opens in any spreadsheet or `pandas.read_csv`. Its columns:

    split, index, source, label, label_name, correct, loss,
    pred1, pred1_name, prob1, ..., pred5, pred5_name, prob5, epoch, checkpoint

`index` is the sample's index in its source split (the batch's "index"), `pred1` the top-1
prediction, `prob*` softmax probabilities. `label`, `label_name` and `correct` are empty for
unlabeled samples, `loss` for them and for `trainer.predict`. `epoch` (counted from 0, like
checkpoint names) and `checkpoint` say which weights made the predictions (`checkpoint` is empty
during training). The JSON sidecar holds the split, the stage, the epoch and checkpoint again, the
number of samples, and the run's experiment (its choices from conf/ and its overrides), from which
compare.py rebuilds the dataset with this installation's conf/ to show the images.
"""

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from checkpoints.loading import is_experiment_record
from user_errors import UserError

PREDICTION_FILE_SUFFIXES = (".csv", ".json")
# a spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...), =cmd|..., @SUM(...))
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_spreadsheet_text(row: Sequence[Any]) -> list[Any]:
    """The row with each text cell that a spreadsheet would run as a formula kept as text: a leading `'`. Class
    names, labels and file names come from files of elsewhere."""
    return [f"'{cell}" if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell for cell in row]


@dataclass
class Predictions:
    """A prediction file read back: its sidecar's metadata and its rows (strings, as in the CSV), in index order."""

    path: Path
    meta: dict[str, Any]
    rows: list[dict[str, str]]

    @property
    def split(self) -> str:
        return self.meta["split"]

    @property
    def dataset(self) -> str:
        return str(self.meta["experiment"]["choices"].get("data"))

    @property
    def top_k(self) -> int:
        return sum(name.startswith("prob") for name in self.rows[0]) if self.rows else 0


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def write_predictions(
    path: Path,
    *,
    split: str,
    stage: str,
    index: np.ndarray,
    label: np.ndarray | None,
    loss: np.ndarray | None,
    top_ids: np.ndarray,
    top_probs: np.ndarray,
    class_names: Sequence[str],
    sources: Sequence[str],
    epoch: int | None,
    checkpoint: str,
    experiment: dict[str, Any],
) -> None:
    """Writes the CSV (rows in the given order, `sources[i]` where sample i comes from) and its JSON sidecar."""
    k = top_ids.shape[1]
    prediction_columns = [
        name for rank in range(1, k + 1) for name in (f"pred{rank}", f"pred{rank}_name", f"prob{rank}")
    ]
    columns = [
        "split",
        "index",
        "source",
        "label",
        "label_name",
        "correct",
        "loss",
        *prediction_columns,
        "epoch",
        "checkpoint",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in range(len(index)):
            sample = int(index[row])
            if label is None:
                truth = ["", "", ""]
            else:
                true_id = int(label[row])
                truth = [true_id, class_names[true_id], int(top_ids[row, 0] == true_id)]
            sample_loss = "" if loss is None else f"{loss[row]:.6g}"
            predicted = [
                value
                for rank in range(k)
                for value in (int(top_ids[row, rank]), class_names[top_ids[row, rank]], f"{top_probs[row, rank]:.6g}")
            ]
            writer.writerow(
                as_spreadsheet_text(
                    [
                        split,
                        sample,
                        sources[row],
                        *truth,
                        sample_loss,
                        *predicted,
                        "" if epoch is None else epoch,
                        checkpoint,
                    ]
                )
            )
    meta = {
        "split": split,
        "stage": stage,
        "epoch": epoch,
        "checkpoint": checkpoint,
        "num_samples": len(index),
        "experiment": experiment,
    }
    sidecar_path(path).write_text(json.dumps(meta, indent=2))


def read_predictions(path: str | Path) -> Predictions:
    """A prediction file and its sidecar; a missing or foreign file is a UserError."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".csv")
    if not path.is_file():
        raise UserError(
            f"No prediction file at {path}: pass a <run dir>/predictions/*.csv written by train.py or eval.py, or a checkpoint."
        )
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise UserError(
            f"{path} has no sidecar {sidecar.name} beside it: pass a prediction file written by train.py or eval.py, with its .json."
        )
    try:
        meta = json.loads(sidecar.read_text())
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error, RecursionError) as error:
        raise UserError(
            f"{path} or its sidecar {sidecar.name} is not a prediction file ({error}): pass one written by train.py or eval.py."
        ) from error
    required = {"split", "index", "label", "label_name", "correct", "pred1", "pred1_name", "prob1"}
    if (
        not isinstance(meta, dict)
        or meta.get("split") not in ("val", "test", "predict")
        or not is_experiment_record(meta.get("experiment"))
        or (rows and not required <= set(rows[0]))
    ):
        raise UserError(
            f"{path} is not a prediction file of train.py or eval.py (its columns lack some of {sorted(required)}, or its sidecar a split and experiment): pass one written by this version."
        )
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        for column, value in row.items():
            if not _well_formed(column, value):
                raise UserError(
                    f"{path} line {number}: {column}={str(value)[:40]!r} is not what train.py or eval.py writes there: pass an unchanged prediction file."
                )
    return Predictions(path, meta, rows)


def _well_formed(column: str | None, value: str | None) -> bool:
    """The numeric columns hold numbers of their kind (labels may be empty for unlabelled samples, losses for predict)."""
    if column is None or value is None:  # a row longer or shorter than the header
        return False
    try:
        if column == "index" or (column.startswith("pred") and column[4:].isdigit()):
            return int(value) >= 0
        if column in ("label", "correct"):
            return value == "" or int(value) >= 0
        if column.startswith("prob"):
            return 0.0 <= float(value) <= 1.0
        if column == "loss":
            return value == "" or float(value) >= 0.0
    except ValueError:
        return False
    return True
