"""compare.py on hand-made prediction files with planted disagreements, and its refusals."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis.prediction_files import read_predictions, write_predictions
from runs.build import build_datamodule
from runs.comparing import check_comparable
from tests.helpers.commands import run_entry
from tests.helpers.compose import compose_config
from tests.helpers.csv_rows import read_rows
from tests.helpers.tensorboard_events import image_tags
from user_errors import UserError

# positions in the val split of the samples where B's top-1 differs from A's
RIGHT_TO_WRONG = [4, 61]
WRONG_TO_RIGHT = [18, 90, 55]
BOTH_WRONG = [30]  # A and B wrong, with different predictions
WRONG_IN_BOTH_ALIKE = [7]  # A and B wrong with the same prediction: not a disagreement


@pytest.fixture(scope="module")
def val_split(mnist_dir, tmp_path_factory):
    """The tiny MNIST's val split: its data folder, source indices and labels."""
    cfg = compose_config(
        [f"data.data_dir={mnist_dir}", "data.val_size=100", "data.download=false"], tmp_path_factory.mktemp("compose")
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup("validate")
    return (
        mnist_dir,
        datamodule.val_set.source_index.numpy(),
        datamodule.val_set.labels.numpy(),
        datamodule.class_names,
    )


def indices(val_split, positions: list[int]) -> list[int]:
    return sorted(int(val_split[1][position]) for position in positions)


def write_hand_made(
    path: Path,
    val_split,
    offsets: dict[int, int],
    split: str = "val",
    data_choice: str = "mnist",
    confidence: dict[int, float] | None = None,
) -> Path:
    """Predictions that are right except at the positions in `offsets`, where they predict (label + offset) % 10."""
    _, index, label, class_names = val_split
    predicted = label.copy()
    for position, offset in offsets.items():
        predicted[position] = (label[position] + offset) % 10
    top_ids = np.stack([(predicted + rank) % 10 for rank in range(5)], axis=1)
    top_probs = np.tile([0.6, 0.2, 0.1, 0.05, 0.05], (len(index), 1))
    for position, top1 in (confidence or {}).items():
        top_probs[position] = [top1, *(np.full(4, (1 - top1) / 4))]
    write_predictions(
        path,
        split=split,
        stage=split,
        index=index,
        label=label,
        loss=np.ones(len(index)),
        top_ids=top_ids,
        top_probs=top_probs,
        class_names=class_names,
        sources=[f"{split}[{sample}]" for sample in index],
        epoch=0,
        checkpoint=str(path.with_suffix(".ckpt")),
        experiment={"choices": {"data": data_choice}, "overrides": ["data.val_size=100"]},
    )
    return path


@pytest.fixture(scope="module")
def planted(val_split, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hand_made")
    a = write_hand_made(
        folder / "a.csv", val_split, {position: 1 for position in WRONG_TO_RIGHT + BOTH_WRONG + WRONG_IN_BOTH_ALIKE}
    )
    b = write_hand_made(
        folder / "b.csv",
        val_split,
        {
            **{position: 1 for position in RIGHT_TO_WRONG + WRONG_IN_BOTH_ALIKE},
            **{position: 2 for position in BOTH_WRONG},
        },
    )
    return a, b


def test_compare_finds_exactly_the_planted_disagreements(planted, val_split, tmp_path):
    a, b = planted
    result = run_entry("compare.py", str(a), str(b), f"data.data_dir={val_split[0]}", f"hydra.run.dir={tmp_path}")
    differing = indices(val_split, RIGHT_TO_WRONG + WRONG_TO_RIGHT + BOTH_WRONG)
    rows = read_rows(tmp_path / "disagreements.csv")
    assert [int(row["index"]) for row in rows] == differing
    assert [int(row["index"]) for row in rows if row["change"] == "right->wrong"] == indices(val_split, RIGHT_TO_WRONG)
    assert [int(row["index"]) for row in rows if row["change"] == "wrong->right"] == indices(val_split, WRONG_TO_RIGHT)
    assert "A: a.ckpt (epoch 0)  top-1 95.00% (95/100)" in result.stdout
    assert "B: b.ckpt (epoch 0)  top-1 96.00% (96/100)" in result.stdout
    assert (
        "agreement 94.00% (94/100); 6 judged differently: 2 right->wrong, 3 wrong->right, 1 wrong in both"
        in result.stdout
    )
    listed = [int(line.split()[0]) for line in result.stdout.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert listed == differing
    with Image.open(tmp_path / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.width >= 400 and sheet.height >= 300
    assert image_tags(tmp_path / "tensorboard") == {"compare/contact_sheet": 1}


@pytest.mark.slow
def test_compare_refuses_predictions_of_another_split(planted, val_split, tmp_path):
    a, _ = planted
    other = write_hand_made(tmp_path / "test_split.csv", val_split, {}, split="test")
    result = run_entry("compare.py", f"a={a}", f"b={other}", f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert (
        "holds val predictions" in line
        and "holds test predictions" in line
        and "same split of the same dataset" in line
    )


@pytest.mark.parametrize("mismatch", ["dataset", "samples", "labels"])
def test_mismatched_pairs_are_refused(planted, val_split, tmp_path, mismatch):
    a = read_predictions(planted[0])
    if mismatch == "dataset":
        b = read_predictions(write_hand_made(tmp_path / "b.csv", val_split, {}, data_choice="fake"))
    else:
        b = read_predictions(planted[1])
        if mismatch == "samples":
            b.rows = b.rows[:-1]
        else:
            b.rows[0] = {**b.rows[0], "label": str((int(b.rows[0]["label"]) + 1) % 10)}
    with pytest.raises(
        UserError,
        match={
            "dataset": "val predictions of fake",
            "samples": "not of the same samples with the same true labels",
            "labels": "not of the same samples with the same true labels",
        }[mismatch],
    ):
        check_comparable(a, b)


@pytest.mark.slow
def test_a_missing_prediction_file_is_one_sentence(tmp_path):
    result = run_entry(
        "compare.py",
        str(tmp_path / "nothing.csv"),
        str(tmp_path / "nothing.csv"),
        f"hydra.run.dir={tmp_path / 'out'}",
        check=False,
    )
    assert result.returncode == 2 and "No prediction file at" in result.stderr and "Traceback" not in result.stderr


def test_contact_sheet_shows_the_most_confident_flips_of_both_directions(val_split, tmp_path):
    # positions 0-11: A right, B wrong; 12-23: A wrong, B right; the wrong side's confidence rises with the position
    flips_b, flips_a = list(range(0, 12)), list(range(12, 24))
    confidence = {position: 0.3 + 0.02 * position for position in flips_b + flips_a}
    a = write_hand_made(tmp_path / "a.csv", val_split, {position: 1 for position in flips_a}, confidence=confidence)
    b = write_hand_made(tmp_path / "b.csv", val_split, {position: 1 for position in flips_b}, confidence=confidence)
    result = run_entry(
        "compare.py",
        str(a),
        str(b),
        "num_images=20",
        f"data.data_dir={val_split[0]}",
        f"hydra.run.dir={tmp_path / 'out'}",
    )
    source = val_split[1]
    for change, positions in (("right->wrong", flips_b), ("wrong->right", flips_a)):
        (line,) = [line for line in result.stdout.splitlines() if line.strip().startswith(f"{change}, most confident")]
        expected = [f"#{source[position]}" for position in sorted(positions, reverse=True)[:10]]
        assert line.split(": ", 1)[1].split() == expected
    with Image.open(tmp_path / "out" / "contact_sheet.png") as sheet:
        assert sheet.height > 5 * 290  # two sections of 3 rows of 4


def test_a_sample_predicted_with_certainty_reads_back(tmp_path):
    """Cross-entropy rounds to -0.0 for a certain, right prediction: its row reads back like any other."""
    path = tmp_path / "val-epoch000.csv"
    write_predictions(
        path,
        split="val",
        stage="val",
        index=np.arange(2),
        label=np.array([3, 4]),
        loss=np.array([-0.0, 0.25]),
        top_ids=np.array([[3], [1]]),
        top_probs=np.array([[1.0], [0.7]]),
        class_names=[str(digit) for digit in range(10)],
        sources=["val[0]", "val[1]"],
        epoch=0,
        checkpoint="last.ckpt",
        experiment={"choices": {"data": "mnist"}, "overrides": []},
    )
    assert [row["loss"] for row in read_predictions(path).rows] == ["0", "0.25"]
