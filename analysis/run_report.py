"""The report of a finished run or sweep (report.py): loss.png, top1.png, top5.png and report.md."""

import math
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import yaml

from analysis.run_records import RunRecord, find_runs, read_run
from analysis.sweep_table import markdown_table, summarize
from user_errors import UserError

METRICS = ("loss", "top1", "top5")
TITLES = {"loss": "Loss (cross-entropy)", "top1": "Top-1 accuracy", "top5": "Top-5 accuracy"}
# report.py's `target` keys (conf/report.yaml) -> the curve each names
TARGET_TAGS = {f"{split}_{metric}": f"{split}/{metric}" for split in ("train", "val") for metric in ("top1", "top5")}
AVERAGING_NOTE = (
    "train (dashed): mean over the batches of each epoch, as the weights change; "
    "val (solid): measured once, at the end of each epoch"
)
Curve = tuple[list[int], list[float]]  # epochs, values


class Overfitting(NamedTuple):
    onset: int  # the first epoch after the val loss minimum
    sentence: str


def targets_of(target: Mapping[str, object] | None) -> list[tuple[str, float]]:
    """{"train_top5": 0.95, "val_top1": None} -> [("train/top5", 0.95)]: a null target is dropped."""
    if target is not None and not isinstance(target, Mapping):
        raise UserError(f"target={target!r} is not a set of targets: set one at a time, e.g. target.val_top1=0.98.")
    for name, fraction in (target or {}).items():
        if name not in TARGET_TAGS:
            names = ", ".join(f"target.{key}" for key in TARGET_TAGS)
            raise UserError(f"target.{name} is not a target: name one of {names}, e.g. target.val_top1=0.98.")
        if fraction is not None and (type(fraction) not in (int, float) or not 0 < fraction <= 1):  # not True
            raise UserError(
                f"target.{name}={fraction} is not a fraction with 0 < FRACTION <= 1: give the accuracy to reach as a fraction, e.g. target.{name}=0.98, or target.{name}=null to drop it."
            )
    return [(TARGET_TAGS[name], float(fraction)) for name, fraction in (target or {}).items() if fraction is not None]


def detect_overfitting(train_loss: Curve, val_loss: Curve, patience=3, min_rise=0.05) -> Overfitting | None:
    """After the lowest val loss, `patience` epochs all above it, ending `min_rise` above it, while train loss fell."""
    train, (epochs, values) = dict(zip(*train_loss)), val_loss
    if not values:
        return None
    best = values.index(min(values))  # the global minimum: an early noisy dip beaten later is harmless
    after, first, last = values[best + 1 :], epochs[best], epochs[-1]
    if len(after) < patience or first not in train or last not in train or train[last] >= train[first]:
        return None
    if min(after) <= values[best] or after[-1] < values[best] * (1 + min_rise):
        return None
    onset, rise = epochs[best + 1], 100 * (after[-1] / values[best] - 1) if values[best] > 0 else math.inf
    return Overfitting(
        onset,
        f"val loss rises from epoch {onset} while train loss keeps falling: overfitting from epoch {onset} "
        f"(val loss lowest at epoch {first}, {values[best]:.4f}, then {after[-1]:.4f} at the last epoch, +{rise:.0f}%; "
        f"train loss {train[first]:.4f} -> {train[last]:.4f}).",
    )


def target_sentence(tag: str, curve: Curve, target: float) -> str:
    """E.g. "train top-5 reached 95% at epoch 12", or how far it got."""
    if not curve[1]:
        return f"{label(tag)}: not logged."
    if (reached := next((epoch for epoch, value in zip(*curve) if value >= target), None)) is not None:
        return f"{label(tag)} reached {100 * target:g}% at epoch {reached}."
    epoch, best = best_of(curve, tag)
    return f"{label(tag)} never reached {100 * target:g}% (best {best:.2%} at epoch {epoch})."


def label(tag: str) -> str:
    return tag.replace("/", " ").replace("top", "top-")


def best_of(curve: Curve, tag: str) -> tuple[int | None, float]:
    """(epoch, value) of the first best point, lowest loss or highest accuracy; (None, nan) for no points."""
    if not curve[1]:
        return None, math.nan
    best = (min if tag.endswith("loss") else max)(curve[1])
    return curve[0][curve[1].index(best)], best


def show(value: float, tag: str = "top1", spec: str = "") -> str:
    return "–" if math.isnan(value) else format(value, spec or (".4f" if tag.endswith("loss") else ".2%"))


def last(run: RunRecord, tag: str) -> float:
    return (run.series(tag)[1] or [math.nan])[-1]


def observations(run: RunRecord, overfitting: Overfitting | None, targets: Sequence[tuple[str, float]]) -> list[str]:
    found, losses = [], run.series("val/loss")[1]
    if overfitting is not None:
        found.append(overfitting.sentence)
    elif len(losses) > 3 and losses[-1] == min(losses) and losses[-1] < losses[-4]:
        found.append("val loss was still falling at the last epoch: more epochs may help.")
    train, val = last(run, "train/top1"), last(run, "val/top1")
    if not math.isnan(train - val):
        side = "above" if train >= val else "below"
        found.append(
            f"at the last epoch train top-1 is {100 * abs(train - val):.2f} points {side} val top-1 ({show(train)} vs {show(val)})."
        )
    found += [target_sentence(tag, run.series(tag), target) for tag, target in targets]
    if run.timing.get("data_wait_frac", 0) > 0.3:
        found.append(
            f"{show(run.timing['data_wait_frac'])} of the training time went to waiting for data: the input pipeline limits the speed."
        )
    return [f"- {sentence[0].upper()}{sentence[1:]}" for sentence in found]


def run_section(run: RunRecord, overfitting: Overfitting | None, targets: Sequence[tuple[str, float]]) -> list[str]:
    epochs = [max(points) for points in run.curves.values() if points]
    lines = [f"| metric | last epoch ({max(epochs, default=None)}) | best (epoch) |", "| --- | --- | --- |"]
    for tag in (f"{split}/{metric}" for split in ("train", "val") for metric in METRICS):
        epoch, best = best_of(run.series(tag), tag)
        if epoch is not None:
            lines.append(f"| {label(tag)} | {show(last(run, tag), tag)} | {show(best, tag)} ({epoch}) |")
    lines += [f"| {label(tag)} (best checkpoint) | {show(value, tag)} | |" for tag, value in sorted(run.final.items())]
    lines += ["", "### Time and throughput", ""]

    def timing(key: str, spec: str = ".0f") -> str:
        return show(run.timing.get(key, math.nan), spec=spec)

    if run.timing:
        lines += [
            f"- training time {timing('train_s', '.1f')} s, validation time {timing('val_s', '.1f')} s; "
            f"{show(run.wall_s, spec='.1f')} s from the first to the last logged point (a resumed run's pause included)",
            f"- throughput {timing('samples_per_s')} training images/s over {timing('samples')} images; "
            f"{timing('data_wait_frac', '.2%')} of the training time spent waiting for data",
            f"- peak memory {timing('peak_memory_mb')} MB",
        ]
    else:
        lines.append(
            f"No timing summary in {run.path / 'timing.csv'} (the timing callback was off, or training did not finish)."
        )
    lines += ["", "### Observations", "", *observations(run, overfitting, targets), "", "### Config", ""]
    overrides, config = " ".join(run.overrides) or "(none recorded)", yaml.safe_dump(run.config, sort_keys=False)
    details = ["<details><summary>composed config</summary>", "", "```yaml", config.rstrip(), "```", "", "</details>"]
    return lines + [f"Overrides: `{overrides}`", "", *details]


def fold_statistics(runs: Sequence[RunRecord], labels: Sequence[str]) -> list[str]:
    """Mean and sample standard deviation over the folds of the K-fold runs that differ only in data.fold."""
    groups: dict[str, list[RunRecord]] = {}
    for run, name in zip(runs, labels):
        if (run.config.get("data") or {}).get("num_folds"):
            rest = " ".join(part for part in name.split() if not part.startswith("data.fold="))
            groups.setdefault(rest, []).append(run)
    measures = {"best val top-1": lambda run: best_of(run.series("val/top1"), "val/top1")[1]}  # named like their tag
    measures |= {f"last-epoch val {label(m)}": lambda run, tag=f"val/{m}": last(run, tag) for m in METRICS}
    lines = []
    for rest, members in groups.items():
        if len(members) < 2:
            continue
        folds = ", ".join(str(run.config["data"]["fold"]) for run in members)
        heading = f"{len(members)} folds ({folds}) of data.num_folds={members[0].config['data']['num_folds']}"
        lines += ["", heading + (f", {rest}" if rest else "") + ":", ""]
        lines += ["| metric | mean | standard deviation | per fold |", "| --- | --- | --- | --- |"]
        for name, measure in measures.items():
            values = [measure(run) for run in members]
            if not any(math.isnan(value) for value in values):  # logged by every fold
                shown = [show(value, name) for value in (statistics.mean(values), statistics.stdev(values), *values)]
                lines.append(f"| {name} | {shown[0]} | {shown[1]} | {', '.join(shown[2:])} |")  # mean, stdev, per fold
    note = "\nStandard deviation over the folds with the n-1 denominator (the sample standard deviation)."
    return ["## K-fold cross-validation", *lines, note] if lines else []


def curves_figure(metric, runs, labels, overfitting, targets=()):
    """One metric per epoch, train dashed and val solid: a single run's best val epoch and overfitting onset marked,
    a sweep's runs one colour each labelled by `labels`, a line for each target of this metric."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    single, title = len(runs) == 1, TITLES[metric]
    figure = Figure(figsize=(8.5 if single else 11, 5), layout="constrained")
    axes = figure.add_subplot(title=f"{title} per epoch", xlabel="epoch (counted from 0)", ylabel=title.split(" (")[0])
    for position, (run, name, found) in enumerate(zip(runs, labels, overfitting)):
        colour = colormaps["tab10" if len(runs) <= 10 else "tab20"](position % 20)
        for split, style in (("train", "--"), ("val", "-")):
            epochs, values = run.series(f"{split}/{metric}")
            colour = f"C{split == 'val':d}" if single else colour
            legend = split if single else "\n".join(textwrap.wrap(name, 34)) if split == "val" else None
            few = len(epochs) <= 3  # with one epoch the points are all there is: train's hollow, val's filled
            marker = {"marker": "o", "ms": 7 if few else 3, "mfc": "white" if split == "train" else colour}
            axes.plot(epochs, values, style, color=colour, lw=1.6, label=legend if epochs else None,
                      **(marker if few or len(runs) <= 5 else {}))  # fmt: skip
        if single and epochs:  # the val curve
            epoch, best = best_of((epochs, values), metric)
            axes.plot(epoch, best, "*", color="C3", ms=13, zorder=3, clip_on=False, label=f"best val (epoch {epoch})")
        if single and found:
            axes.axvline(found.onset, color="0.4", linestyle=":", lw=1.2, label=f"overfitting from epoch {found.onset}")
    epochs = sorted({epoch for line in axes.get_lines() for epoch in line.get_xdata()})  # before the target lines
    if len(epochs) == 1:  # a range around the one point, not matplotlib's +-0.05
        axes.set(xlim=(epochs[0] - 0.5, epochs[0] + 0.5), xticks=epochs)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for tag, fraction in targets:
        if tag.endswith(f"/{metric}"):
            axes.axhline(fraction, color="0.25", linestyle="--", lw=1.1, zorder=1)
            axes.text(0.99, fraction, f"target: {label(tag)} {100 * fraction:g}%", transform=axes.get_yaxis_transform(),
                      ha="right", va="top", fontsize=8, color="0.25")  # fmt: skip
    if metric != "loss":
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    axes.grid(True, alpha=0.3)
    figure.supxlabel(AVERAGING_NOTE, fontsize=8, color="0.35")
    if single and axes.get_legend_handles_labels()[0]:  # none: nothing logged for this metric
        axes.legend(fontsize=9)
    elif axes.get_legend_handles_labels()[0]:
        figure.legend(loc="outside right upper", fontsize=8, title="run (val)", ncols=1 if len(runs) <= 16 else 2)
    return figure


def write_report(folder: Path, out: Path, target: Mapping[str, object] | None, patience=3, min_rise=0.05) -> Path:
    targets = targets_of(target)
    if type(patience) is not int or patience < 1:  # True is no number of epochs
        raise UserError(f"patience={patience} is not a whole number of epochs of at least 1: e.g. patience=3.")
    if type(min_rise) not in (int, float) or not 0 <= min_rise < math.inf:
        raise UserError(f"min_rise={min_rise} is not a relative rise of at least 0: e.g. min_rise=0.05 (5%).")
    runs = [read_run(path) for path in find_runs(folder)]
    shared = set.intersection(*(set(run.overrides) for run in runs))  # a run's label: the overrides that set it apart
    labels = [" ".join(item for item in run.overrides if item not in shared) or run.path.name for run in runs]
    overfitting = [
        detect_overfitting(run.series("train/loss"), run.series("val/loss"), patience, min_rise) for run in runs
    ]
    out.mkdir(parents=True, exist_ok=True)
    for metric in METRICS:
        curves_figure(metric, runs, labels, overfitting, targets).savefig(out / f"{metric}.png", dpi=100)
    lines = [
        f"# Report of the {'run' if len(runs) == 1 else f'sweep of {len(runs)} runs'} in {folder}",
        "",
        "Written by report.py from the runs' TensorBoard event files, timing.csv and stored config. "
        "Epochs are counted from 0, as in the checkpoint names.",
        "",
        "## Curves",
        "",
        *(f"![{TITLES[metric]} per epoch]({metric}.png)\n" for metric in METRICS),
    ]
    if len(runs) > 1:
        lines += ["## Runs", "", *markdown_table(*summarize(folder)), "", *fold_statistics(runs, labels)]
    for run, name, onset in zip(runs, labels, overfitting):
        heading = f"## Run {run.path.name}" + (f": `{name}`" if len(runs) > 1 else "")
        lines += ["", heading, "", f"Directory: `{run.path}`", "", "### Metrics", "", *run_section(run, onset, targets)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"
