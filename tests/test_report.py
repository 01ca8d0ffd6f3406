"""report.py on a real tiny run and on runs with planted curves, as a command (its positional shorthand and
key=value settings, refusals, no folder of Hydra's own) and in this process (analysis/run_report.py); the
overfitting detector on its own."""

import math
from pathlib import Path

import pytest
import yaml
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from analysis.run_report import detect_overfitting, target_sentence, targets_of, write_report
from runs.entry_points import quoted
from tests.helpers.commands import files_left, run_entry
from tests.helpers.csv_rows import read_rows
from tests.helpers.tensorboard_events import read_scalars
from tests.helpers.tiny_runs import tiny_run
from user_errors import UserError

FIGURES = ("loss.png", "top1.png", "top5.png")


def curve(values: list[float]) -> tuple[list[int], list[float]]:
    return list(range(len(values))), values


FALLING_TRAIN = curve([2.0 * 0.8**epoch for epoch in range(12)])
# lowest at epoch 5, then rising steadily: overfitting from epoch 6
OVERFITTING_VAL = curve(
    [1.5 * 0.8**epoch for epoch in range(6)] + [1.5 * 0.8**5 * (1 + 0.07 * step) for step in range(1, 7)]
)
HEALTHY_VAL = curve([1.5 * 0.85**epoch for epoch in range(12)])
# noisy but still improving: a dip at epoch 4 is beaten later
NOISY_HEALTHY_VAL = curve([1.5, 1.1, 0.9, 0.8, 0.6, 0.7, 0.66, 0.62, 0.58, 0.61, 0.55, 0.57])
# flat after epoch 5, within 2% noise: no sustained rise
PLATEAU_VAL = curve([1.5, 1.0, 0.8, 0.7, 0.65, 0.6] + [0.6 * (1 + 0.01 * (-1) ** epoch + 0.005) for epoch in range(6)])


def test_overfitting_detector_fires_at_the_epoch_after_the_val_loss_minimum():
    found = detect_overfitting(FALLING_TRAIN, OVERFITTING_VAL)
    assert found is not None and found.onset == 6
    assert found.sentence.startswith(
        "val loss rises from epoch 6 while train loss keeps falling: overfitting from epoch 6 (val loss lowest at epoch 5,"
    )


@pytest.mark.parametrize(
    "val_loss", [HEALTHY_VAL, NOISY_HEALTHY_VAL, PLATEAU_VAL], ids=["healthy", "noisy-healthy", "plateau"]
)
def test_overfitting_detector_stays_silent_on_healthy_curves(val_loss):
    assert detect_overfitting(FALLING_TRAIN, val_loss) is None


def test_overfitting_needs_a_sustained_rise_and_a_falling_train_loss():
    rising_briefly = curve(OVERFITTING_VAL[1][:8])  # only 2 epochs after the minimum
    assert detect_overfitting(FALLING_TRAIN, rising_briefly) is None
    assert detect_overfitting(FALLING_TRAIN, rising_briefly, patience=2) is not None
    flat_train = curve([0.5] * 12)  # both losses bad: underfitting or divergence, not overfitting
    assert detect_overfitting(flat_train, OVERFITTING_VAL) is None


def test_targets_name_the_first_epoch_that_reached_them():
    top5 = curve([0.5, 0.8, 0.94, 0.951, 0.93, 0.97])
    assert target_sentence("train/top5", top5, 0.95) == "train top-5 reached 95% at epoch 3."
    assert target_sentence("val/top1", top5, 0.99) == "val top-1 never reached 99% (best 97.00% at epoch 5)."


def test_report_of_a_tiny_run_has_the_figures_and_the_numbers_of_its_event_files(mnist_dir, tmp_path_factory):
    run = tiny_run(tmp_path_factory, mnist_dir)
    result = run_entry("report.py", str(run), "target.train_top5=0.5")
    out = run / "report"
    for name in FIGURES:
        with Image.open(out / name) as figure:
            assert figure.format == "PNG" and figure.width >= 600 and figure.height >= 400
    report = (out / "report.md").read_text()
    assert str(out / "report.md") in result.stdout
    scalars = read_scalars(run / "tensorboard")
    last_epoch = len(scalars["val/top1"]) - 1
    for tag in ("train/loss", "val/loss"):
        assert f"| {tag.replace('/', ' ')} | {scalars[tag][-1][1]:.4f} |" in report
    for tag in ("train/top1", "train/top5", "val/top1", "val/top5"):
        label = tag.replace("/", " ").replace("top", "top-")
        best_epoch, best = max(enumerate(value for _, value in scalars[tag]), key=lambda item: item[1])
        assert f"| {label} | {100 * scalars[tag][-1][1]:.2f}% | {100 * best:.2f}% ({best_epoch}) |" in report
    assert f"| test top-1 (best checkpoint) | {100 * scalars['test/top1'][-1][1]:.2f}% |" in report
    assert f"| metric | last epoch ({last_epoch}) |" in report
    timing = read_rows(run / "timing.csv")[-1]
    assert f"training time {float(timing['train_s']):.1f} s" in report
    assert (
        f"throughput {float(timing['samples_per_s']):.0f} training images/s over {timing['samples']} images" in report
    )
    first = next(epoch for epoch, (_, value) in enumerate(scalars["train/top5"]) if value >= 0.5)
    assert f"- Train top-5 reached 50% at epoch {first}." in report
    assert "model:\n  _target_: lightning_modules.nets.lenet.LeNet5" in report  # the composed config


def write_planted_run(run: Path, train_loss: list[float], val_loss: list[float], fold: int | None = None) -> None:
    """Event files laid out as Lightning writes them (epoch beside each metric, one point per epoch), and a stored config."""
    writer = SummaryWriter(str(run / "tensorboard"))
    for epoch, (train, val) in enumerate(zip(train_loss, val_loss)):
        step = 10 * (epoch + 1)
        for tag, value in {
            "val/loss": val,
            "val/top1": math.exp(-val),
            "epoch": epoch,
            "train/loss": train,
            "train/top1": math.exp(-train),
        }.items():
            writer.add_scalar(tag, value, step)
    writer.close()
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"data": {"num_folds": None if fold is None else 3, "fold": fold or 0}})
    )
    overrides = ["model=lenet"] + ([] if fold is None else ["data.num_folds=3", f"data.fold={fold}"])
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))


def test_report_says_when_a_run_overfits(tmp_path):
    write_planted_run(tmp_path / "run", FALLING_TRAIN[1], OVERFITTING_VAL[1])
    write_report(tmp_path / "run", tmp_path / "out", None)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "- Val loss rises from epoch 6 while train loss keeps falling: overfitting from epoch 6" in report
    assert "No timing summary in" in report


def test_report_of_a_k_fold_sweep_gives_mean_and_std_over_the_folds(tmp_path):
    scales = [1.0, 1.2, 0.8]
    for fold, scale in enumerate(scales):
        write_planted_run(tmp_path / str(fold), FALLING_TRAIN[1], [scale * value for value in HEALTHY_VAL[1]], fold)
    write_report(tmp_path, tmp_path / "report", None)
    report = (tmp_path / "report" / "report.md").read_text()
    last = [scale * HEALTHY_VAL[1][-1] for scale in scales]
    mean = sum(last) / 3
    std = math.sqrt(sum((value - mean) ** 2 for value in last) / 2)
    assert "3 folds (0, 1, 2) of data.num_folds=3:" in report
    assert f"| last-epoch val loss | {mean:.4f} | {std:.4f} | {', '.join(f'{value:.4f}' for value in last)} |" in report
    assert "Every job: `model=lenet` `data.num_folds=3`" in report  # the sweep table (analysis/sweep_table.py)
    assert (
        "| job | status | data.fold | best_val_top1 |" in report
        and f"| 1 | unfinished | 1 | {math.exp(-last[1]):.4f} |" in report
    )


def assert_refused(result, said: str) -> None:
    """Exit code 2 and one sentence on stderr, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and lines == [f"error: {said}"], result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr


def test_report_of_a_folder_without_runs_is_one_sentence_and_leaves_no_folder(tmp_path):
    before = files_left(tmp_path)
    result = run_entry("report.py", str(tmp_path), check=False)
    assert_refused(
        result,
        f"{tmp_path} holds no run with TensorBoard event files (<run>/tensorboard/events.out.tfevents.*): pass the directory of a run of train.py (logger=tensorboard) or of a sweep of them.",
    )
    assert files_left(tmp_path) == before  # no report/, no outputs/


@pytest.mark.slow
def test_report_of_a_missing_folder_creates_neither_it_nor_its_report(tmp_path):
    missing = tmp_path / "missing"
    before = files_left(tmp_path)
    expected = (
        "a directory that train.py wrote, a run (logs/train/runs/<run>) or a sweep (logs/train/multiruns/<sweep>)"
    )
    assert_refused(run_entry("report.py", str(missing), check=False), f"No folder at {missing}: pass {expected}.")
    assert_refused(run_entry("report.py", check=False), f"No folder given: pass {expected}, as the first argument.")
    assert files_left(tmp_path) == before


def test_report_shorthand_and_key_value_form_write_the_same_report_and_nothing_else(tmp_path):
    run = tmp_path / "run 1, copy"  # a space and a comma: one path, however Hydra would split it
    write_planted_run(run, FALLING_TRAIN[1], OVERFITTING_VAL[1])
    before = files_left(tmp_path)
    shorthand = run_entry("report.py", str(run))
    written = {path.name for path in (run / "report").iterdir()}
    assert written == {"report.md", *FIGURES}
    assert files_left(tmp_path) == before | {str(run / "report"), *(str(run / "report" / name) for name in written)}
    key_value = run_entry("report.py", f"run={quoted(str(run))}", f"out={tmp_path / 'elsewhere'}")
    assert (tmp_path / "elsewhere" / "report.md").read_text() == (run / "report" / "report.md").read_text()
    assert str(run / "report" / "report.md") in shorthand.stdout
    assert str(tmp_path / "elsewhere" / "report.md") in key_value.stdout


def test_report_targets_are_overridden_one_by_one(tmp_path):
    run = tmp_path / "run"
    write_planted_run(run, FALLING_TRAIN[1], OVERFITTING_VAL[1])
    run_entry("report.py", str(run), "target.val_top1=0.98", "target.train_top5=null", "target.train_top1=0.8")
    report = (run / "report" / "report.md").read_text()
    first = next(epoch for epoch, loss in enumerate(FALLING_TRAIN[1]) if math.exp(-loss) >= 0.8)
    assert "- Val top-1 never reached 98% (best " in report and f"- Train top-1 reached 80% at epoch {first}." in report
    # the default val_top1 replaced, train_top5 dropped
    assert "reached 90%" not in report and "Train top-5" not in report


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        (
            "target.val_top1=98",
            "target.val_top1=98 is not a fraction with 0 < FRACTION <= 1: give the accuracy to reach as a fraction, e.g. target.val_top1=0.98, or target.val_top1=null to drop it.",
        ),
        (
            "+target.val_top2=0.5",
            "target.val_top2 is not a target: name one of target.train_top1, target.train_top5, target.val_top1, target.val_top5, e.g. target.val_top1=0.98.",
        ),
        ("patience=0", "patience=0 is not a whole number of epochs of at least 1: e.g. patience=3."),
    ],
    ids=["fraction", "name", "patience"],
)
@pytest.mark.slow
def test_report_refuses_a_bad_setting_in_one_sentence_and_leaves_no_folder(tmp_path, setting, said):
    run = tmp_path / "run"
    write_planted_run(run, FALLING_TRAIN[1], OVERFITTING_VAL[1])
    before = files_left(tmp_path)
    assert_refused(run_entry("report.py", str(run), setting, f"out={tmp_path / 'new' / 'report'}", check=False), said)
    assert files_left(tmp_path) == before  # neither out nor the parent Hydra created for it


def test_targets_keep_their_names_and_drop_nulls():
    assert targets_of({"train_top5": 0.95, "val_top1": None, "val_top5": 1}) == [
        ("train/top5", 0.95),
        ("val/top5", 1.0),
    ]
    for bad in ({"val_top1": 0.0}, {"val_top1": True}, {"val_top1": "0.9"}, {"val_top1": math.nan}, {"test_top1": 0.9}):
        with pytest.raises(UserError):
            targets_of(bad)
