"""report.py on a real tiny run (as a command) and on runs with planted curves (its main, in this process);
the overfitting detector on its own."""

import math
from pathlib import Path

import pytest
import yaml
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from analysis.observations import detect_overfitting, first_reaching, target_sentence
from report import main as report_main
from tests.helpers.commands import run_entry
from tests.helpers.csv_rows import read_rows
from tests.helpers.tensorboard_events import read_scalars
from tests.helpers.tiny_runs import tiny_run

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
    assert found is not None and found.onset == 6 and found.best_epoch == 5
    assert found.sentence().startswith(
        "val loss rises from epoch 6 while train loss keeps falling: overfitting from epoch 6"
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
    assert first_reaching(top5, 0.95) == 3
    assert target_sentence("train/top5", top5, 0.95) == "train top-5 reached 95% at epoch 3."
    assert target_sentence("val/top1", top5, 0.99) == "val top-1 never reached 99% (best 97.00% at epoch 5)."


def test_report_of_a_tiny_run_has_the_figures_and_the_numbers_of_its_event_files(mnist_dir, tmp_path_factory):
    run = tiny_run(tmp_path_factory, mnist_dir)
    result = run_entry("report.py", str(run), "--target", "train/top5=0.5")
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
    report_main([str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "- Val loss rises from epoch 6 while train loss keeps falling: overfitting from epoch 6" in report
    assert "No timing summary in" in report


def test_report_of_a_k_fold_sweep_gives_mean_and_std_over_the_folds(tmp_path):
    scales = [1.0, 1.2, 0.8]
    for fold, scale in enumerate(scales):
        write_planted_run(tmp_path / str(fold), FALLING_TRAIN[1], [scale * value for value in HEALTHY_VAL[1]], fold)
    report_main([str(tmp_path)])
    report = (tmp_path / "report" / "report.md").read_text()
    last = [scale * HEALTHY_VAL[1][-1] for scale in scales]
    mean = sum(last) / 3
    std = math.sqrt(sum((value - mean) ** 2 for value in last) / 2)
    assert "3 folds (0, 1, 2) of data.num_folds=3:" in report
    assert f"| last-epoch val loss | {mean:.4f} | {std:.4f} | {', '.join(f'{value:.4f}' for value in last)} |" in report
    assert "Overrides shared by all runs: `model=lenet data.num_folds=3`" in report
    assert "| 1 | `data.fold=1` | 12 |" in report


def test_report_of_a_folder_without_runs_is_one_sentence(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        report_main([str(tmp_path)])
    assert stopped.value.code == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path} holds no run with TensorBoard event files (<run>/tensorboard/events.out.tfevents.*): pass the directory of a run of train.py (logger=tensorboard) or of a sweep of them."
    )
