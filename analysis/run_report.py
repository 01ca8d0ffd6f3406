"""The report of a finished run or sweep (report.py): figures of its curves and report.md.

Reads the TensorBoard event files (tensorboard's own reader), timing.csv and the stored config of each
run, and writes a self-contained folder: loss.png, top1.png and top5.png (train and val per epoch; a
sweep overlays its runs, labelled by the overrides that set them apart) and report.md: the config, final
and best metrics, time and throughput, observations computed from the curves (best epoch, overfitting
onset, when a target accuracy was reached), and for a K-fold sweep (`-m data.fold=0,...,K-1`) the mean
and standard deviation of the val metrics over the folds.
"""

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from analysis.observations import Overfitting, detect_overfitting, metric_label, still_improving, target_sentence
from analysis.report_figures import curves_figure
from analysis.run_records import RunRecord, find_runs, read_run
from analysis.sweep_table import markdown_table, summarize
from user_errors import UserError

METRICS = ("loss", "top1", "top5")
METRIC_NAMES = {"loss": "loss", "top1": "top-1", "top5": "top-5"}
FOLD_OVERRIDE = "data.fold="
# the keys of report.py's `target` (conf/report.yaml) -> the curve each names
TARGET_TAGS = {f"{split}_{metric}": f"{split}/{metric}" for split in ("train", "val") for metric in ("top1", "top5")}


def targets_of(target: Mapping[str, object] | None) -> list[tuple[str, float]]:
    """{"train_top5": 0.95, "val_top1": None} -> [("train/top5", 0.95)]: a null target is dropped."""
    if target is not None and not isinstance(target, Mapping):
        raise UserError(f"target={target!r} is not a set of targets: set one at a time, e.g. target.val_top1=0.98.")
    found = []
    for name, fraction in (target or {}).items():
        if name not in TARGET_TAGS:
            raise UserError(
                f"target.{name} is not a target: name one of {', '.join(f'target.{key}' for key in TARGET_TAGS)}, e.g. target.val_top1=0.98."
            )
        if fraction is None:
            continue
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise UserError(
                f"target.{name}={fraction} is not a fraction with 0 < FRACTION <= 1: give the accuracy to reach as a fraction, e.g. target.{name}=0.98, or target.{name}=null to drop it."
            )
        found.append((TARGET_TAGS[name], float(fraction)))
    return found


def check_overfitting_rule(patience: object, min_rise: object) -> None:
    """The two settings of detect_overfitting, as report.py's command line gives them."""
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise UserError(f"patience={patience} is not a whole number of epochs of at least 1: e.g. patience=3.")
    if isinstance(min_rise, bool) or not isinstance(min_rise, (int, float)) or not 0 <= min_rise < math.inf:
        raise UserError(f"min_rise={min_rise} is not a relative rise of at least 0: e.g. min_rise=0.05 (5%).")


def percent(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def number(value: float, digits: int = 4) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def value_of(metric: str, value: float) -> str:
    return number(value) if metric.endswith("loss") else percent(value)


def best_of(run: RunRecord, tag: str) -> tuple[int, float] | None:
    """(epoch, value) of the best point: lowest loss, highest accuracy."""
    epochs, values = run.series(tag)
    if not values:
        return None
    pick = min if tag.endswith("loss") else max
    position = pick(range(len(values)), key=lambda index: values[index])
    return epochs[position], values[position]


def final_of(run: RunRecord, tag: str) -> float:
    values = run.series(tag)[1]
    return values[-1] if values else math.nan


def labels_of(runs: Sequence[RunRecord]) -> list[str]:
    """Each run's overrides that the other runs do not share: its legend label (the shared ones are in the sweep table)."""
    if len(runs) == 1:
        return [runs[0].path.name]
    shared = [override for override in runs[0].overrides if all(override in run.overrides for run in runs[1:])]
    labels = [
        " ".join(override for override in run.overrides if override not in shared) or run.path.name for run in runs
    ]
    return labels


def metrics_table(run: RunRecord) -> list[str]:
    last_epoch = max(
        (max(points) for tag, points in run.curves.items() if tag.startswith(("train/", "val/")) and points),
        default=None,
    )
    lines = [f"| metric | last epoch ({last_epoch}) | best (epoch) |", "| --- | --- | --- |"]
    for split in ("train", "val"):
        for metric in METRICS:
            tag = f"{split}/{metric}"
            best = best_of(run, tag)
            if best is not None:
                lines.append(
                    f"| {metric_label(tag)} | {value_of(metric, final_of(run, tag))} | {value_of(metric, best[1])} ({best[0]}) |"
                )
    for tag, value in sorted(run.final.items()):
        lines.append(f"| {metric_label(tag)} (best checkpoint) | {value_of(tag, value)} | |")
    return lines


def timing_lines(run: RunRecord) -> list[str]:
    timing = run.timing
    if not timing:
        return [
            f"No timing summary in {run.path / 'timing.csv'} (the timing callback was off, or training did not finish)."
        ]
    return [
        f"- training time {number(timing.get('train_s', math.nan), 1)} s, validation time {number(timing.get('val_s', math.nan), 1)} s; "
        f"{number(run.wall_s, 1)} s from the first to the last logged point (a resumed run's pause included)",
        f"- throughput {number(timing.get('samples_per_s', math.nan), 0)} training images/s over {int(timing.get('samples', 0))} images; "
        f"{percent(timing.get('data_wait_frac', math.nan))} of the training time spent waiting for data",
        f"- peak memory {number(timing.get('peak_memory_mb', math.nan), 0)} MB",
    ]


def observations(run: RunRecord, overfitting: Overfitting | None, targets: Sequence[tuple[str, float]]) -> list[str]:
    found = []
    best = best_of(run, "val/top1")
    if best is not None:
        last_epoch = run.series("val/top1")[0][-1]
        where = (
            "the last epoch"
            if best[0] == last_epoch
            else f"epoch {best[0]}; the last epoch ({last_epoch}) has {percent(final_of(run, 'val/top1'))}"
        )
        found.append(f"best val top-1 {percent(best[1])} at {where}.")
    if overfitting is not None:
        found.append(overfitting.sentence())
    elif still_improving(run.series("val/loss")):
        found.append("val loss was still falling at the last epoch: more epochs may help.")
    train_top1, val_top1 = final_of(run, "train/top1"), final_of(run, "val/top1")
    if not math.isnan(train_top1 - val_top1):
        side = "above" if train_top1 >= val_top1 else "below"
        found.append(
            f"at the last epoch train top-1 is {100 * abs(train_top1 - val_top1):.2f} points {side} val top-1 ({percent(train_top1)} vs {percent(val_top1)})."
        )
    found += [target_sentence(tag, run.series(tag), target) for tag, target in targets]
    if run.timing.get("data_wait_frac", 0) > 0.3:
        found.append(
            f"{percent(run.timing['data_wait_frac'])} of the training time went to waiting for data: the input pipeline limits the speed."
        )
    return [f"- {sentence[0].upper()}{sentence[1:]}" for sentence in found]


def fold_statistics(runs: Sequence[RunRecord], labels: Sequence[str]) -> list[str]:
    """Mean and standard deviation over the folds of each group of K-fold runs that differ only in data.fold."""
    groups: dict[str, list[RunRecord]] = {}
    for run, label in zip(runs, labels):
        if (run.config.get("data") or {}).get("num_folds"):
            rest = " ".join(part for part in label.split() if not part.startswith(FOLD_OVERRIDE))
            groups.setdefault(rest, []).append(run)
    lines = []
    for rest, members in groups.items():
        if len(members) < 2:
            continue
        folds = [run.config["data"]["fold"] for run in members]
        lines += [
            "",
            f"{len(members)} folds ({', '.join(map(str, folds))}) of data.num_folds={members[0].config['data']['num_folds']}"
            + (f", {rest}" if rest else "")
            + ":",
            "",
        ]
        lines += ["| metric | mean | standard deviation | per fold |", "| --- | --- | --- | --- |"]
        columns = [("best val top-1", lambda run: (best_of(run, "val/top1") or (0, math.nan))[1], "top1")]
        columns += [
            (f"last-epoch {metric_label(f'val/{metric}')}", lambda run, tag=f"val/{metric}": final_of(run, tag), metric)
            for metric in METRICS
        ]
        for name, measure, metric in columns:
            values = [measure(run) for run in members]
            if any(math.isnan(value) for value in values):  # not logged by every fold
                continue
            lines.append(
                f"| {name} | {value_of(metric, statistics.mean(values))} | {value_of(metric, statistics.stdev(values))} | {', '.join(value_of(metric, value) for value in values)} |"
            )
    if lines:
        lines.insert(0, "## K-fold cross-validation")
        lines.append("\nStandard deviation over the folds with the n-1 denominator (the sample standard deviation).")
    return lines


def write_report(folder: Path, out: Path, targets: Sequence[tuple[str, float]], patience: int, min_rise: float) -> Path:
    runs = [read_run(path) for path in find_runs(folder)]
    labels = labels_of(runs)
    overfitting = [
        detect_overfitting(run.series("train/loss"), run.series("val/loss"), patience, min_rise) for run in runs
    ]
    out.mkdir(parents=True, exist_ok=True)
    for metric in METRICS:
        curves_figure(metric, runs, labels, overfitting, targets).savefig(out / f"{metric}.png", dpi=100)

    kind = "run" if len(runs) == 1 else f"sweep of {len(runs)} runs"
    lines = [
        f"# Report of the {kind} in {folder}",
        "",
        "Written by report.py from the runs' TensorBoard event files, timing.csv and stored config. "
        "Epochs are counted from 0, as in the checkpoint names.",
        "",
        "## Curves",
        "",
        *[f"![{METRIC_NAMES[metric]} per epoch]({metric}.png)\n" for metric in METRICS],
    ]
    if len(runs) > 1:
        lines += ["## Runs", "", *markdown_table(*summarize(folder)), ""]
        lines += fold_statistics(runs, labels)
    for run, label, onset in zip(runs, labels, overfitting):
        heading = f"## Run {run.path.name}" + (f": `{label}`" if len(runs) > 1 else "")
        lines += [
            "",
            heading,
            "",
            f"Directory: `{run.path}`",
            "",
            "### Metrics",
            "",
            *metrics_table(run),
            "",
            "### Time and throughput",
            "",
            *timing_lines(run),
        ]
        lines += ["", "### Observations", "", *observations(run, onset, targets)]
        lines += [
            "",
            "### Config",
            "",
            f"Overrides: `{' '.join(run.overrides) or '(none recorded)'}`",
            "",
            "<details><summary>composed config</summary>",
            "",
            "```yaml",
        ]
        lines += [yaml.safe_dump(run.config, sort_keys=False).rstrip(), "```", "", "</details>"]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
