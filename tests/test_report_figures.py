"""Report figures fit for a lab report (analysis/run_report.py): tick labels, short runs, targets, the averaging note."""

from pathlib import Path

from PIL import Image

from analysis.run_records import RunRecord
from analysis.run_report import AVERAGING_NOTE, curves_figure
from tests.helpers.commands import run_entry
from tests.test_report import write_planted_run


def one_epoch_sweep(count: int) -> list[RunRecord]:
    def curves(i):
        return {
            "train/top5": {0: 0.975 + 0.003 * i},
            "val/top5": {0: 0.982 + 0.0025 * i},
            "train/loss": {0: 0.3},
            "val/loss": {0: 0.2},
        }

    return [RunRecord(Path(f"/runs/{i}"), curves(i), {}, overrides=[f"optimizer.lr={i}"]) for i in range(count)]


def drawn_axes(figure):
    figure.canvas.draw()  # tick labels are decided when drawing
    return figure.axes[0]


def test_percent_ticks_have_the_decimals_that_tell_them_apart():
    run = RunRecord(
        Path("/runs/a"), {"train/top5": {0: 0.978, 1: 0.985, 2: 0.991}, "val/top5": {0: 0.983, 1: 0.99, 2: 0.996}}, {}
    )
    axes = drawn_axes(curves_figure("top5", [run], ["a"], [None]))
    labels = [
        tick.get_text()
        for tick in axes.get_yticklabels()
        if axes.get_ylim()[0] <= tick.get_position()[1] <= axes.get_ylim()[1]
    ]
    assert len(labels) >= 3 and len(set(labels)) == len(labels)
    assert all(
        float(label.rstrip("%")) == round(100 * position, 6)
        for label, position in zip(
            labels, [t for t in axes.get_yticks() if axes.get_ylim()[0] <= t <= axes.get_ylim()[1]]
        )
    )


def test_a_one_epoch_sweep_shows_its_points_around_epoch_zero_and_the_target():
    figure = curves_figure(
        "top5",
        one_epoch_sweep(7),
        [f"optimizer.lr={i}" for i in range(7)],
        [None] * 7,
        [("train/top5", 0.99), ("val/top1", 0.9)],
    )
    axes = drawn_axes(figure)
    assert axes.get_xlim() == (-0.5, 0.5) and list(axes.get_xticks()) == [0]
    curves = [line for line in axes.get_lines() if len(line.get_xdata()) == 1 and line.get_xdata()[0] == 0]
    assert len(curves) == 14 and all(
        line.get_marker() == "o" for line in curves
    )  # 7 runs x 2 splits, even beyond 5 runs
    targets = [line for line in axes.get_lines() if list(line.get_ydata()) == [0.99, 0.99]]
    assert len(targets) == 1 and targets[0].get_linestyle() == "--"  # only the top-5 target on the top-5 figure
    assert [text.get_text() for text in axes.texts] == ["target: train top-5 99%"]
    assert figure.get_supxlabel() == AVERAGING_NOTE


def test_report_draws_one_epoch_runs_with_targets(tmp_path):
    for job in range(6):
        write_planted_run(tmp_path / str(job), [0.5 + 0.1 * job], [0.4 + 0.1 * job])
    result = run_entry("report.py", str(tmp_path), "target.val_top1=0.6", f"out={tmp_path / 'report'}")
    assert "report.md" in result.stdout
    for name in ("loss.png", "top1.png"):
        with Image.open(tmp_path / "report" / name) as figure:
            assert figure.width >= 800 and figure.height >= 400
