"""Per-epoch curves of one run or of a sweep's runs: one figure per metric, train dashed and val solid."""

import textwrap
from collections.abc import Sequence

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter, MaxNLocator

from analysis.observations import Overfitting
from analysis.run_records import RunRecord

METRIC_TITLES = {"loss": "Loss (cross-entropy)", "top1": "Top-1 accuracy", "top5": "Top-5 accuracy"}
SPLIT_STYLES = {"train": "--", "val": "-"}
LEGEND_WIDTH = 34  # characters per line of a run's label in the legend
MARKED_POINTS = 3  # curves with this many points or fewer get markers whatever the number of runs
AVERAGING_NOTE = "train: mean over the batches of each epoch (the weights change during it); val: measured once, at the end of each epoch"


class PercentTicks(Formatter):
    """Percent tick labels with just enough decimals to tell neighbouring ticks apart (98.2%, 98.4% rather than 98%, 98%)."""

    def set_locs(self, locs) -> None:
        super().set_locs(locs)
        # the fewest decimals that write every tick exactly (97.75% stays 97.75%, not 97.8%)
        self.decimals = next(
            (digits for digits in range(5) if all(abs(round(loc, digits) - loc) < 1e-6 for loc in locs)), 4
        )

    def __call__(self, value, position=None) -> str:
        return f"{value:.{getattr(self, 'decimals', 0)}f}%"


def run_colour(position: int, count: int) -> str | tuple:
    """Matplotlib's 10 default colours, or 20 paired shades for larger sweeps (repeating beyond 20)."""
    return f"C{position}" if count <= 10 else colormaps["tab20"](position % 20)


def curves_figure(
    metric: str,
    runs: Sequence[RunRecord],
    labels: Sequence[str],
    overfitting: Sequence[Overfitting | None],
    targets: Sequence[tuple[str, float]] = (),
) -> Figure:
    """`metric`: loss, top1 or top5. A single run gets its own colours per split and its best val epoch
    marked; a sweep gets one colour per run, labelled by `labels`, and a second legend for the splits.
    `targets` (tag, fraction), e.g. ("val/top1", 0.9): a dashed line and a label for each on its metric's figure."""
    single = len(runs) == 1
    figure = Figure(figsize=(8.5 if single else 11, 5), layout="constrained")
    axes = figure.add_subplot()
    accuracy = metric != "loss"
    for position, (run, _label) in enumerate(zip(runs, labels)):
        for split, style in SPLIT_STYLES.items():
            epochs, values = run.series(f"{split}/{metric}")
            if not epochs:
                continue
            values = [100 * value for value in values] if accuracy else values
            colour = f"C{0 if split == 'train' else 1}" if single else run_colour(position, len(runs))
            marked = len(runs) <= 5 or len(epochs) <= MARKED_POINTS
            # train's markers hollow, val's filled: with one epoch the points are all there is to tell the splits apart
            face = "white" if split == "train" else colour
            axes.plot(
                epochs,
                values,
                style,
                color=colour,
                marker="o" if marked else None,
                markersize=3 if len(epochs) > MARKED_POINTS else 7,
                markerfacecolor=face,
                linewidth=1.6,
                label=split if single else None,
            )
            if single and split == "val":
                best = (max if accuracy else min)(range(len(values)), key=lambda index: values[index])
                axes.plot(
                    epochs[best],
                    values[best],
                    "*",
                    color="C3",
                    markersize=13,
                    zorder=3,
                    clip_on=False,
                    label=f"best val (epoch {epochs[best]})",
                )
        onset = overfitting[position]
        if single and onset is not None:
            axes.axvline(
                onset.onset, color="0.4", linestyle=":", linewidth=1.2, label=f"overfitting from epoch {onset.onset}"
            )
    for tag, fraction in targets:
        split, _, target_metric = tag.partition("/")
        if target_metric == metric:
            axes.axhline(100 * fraction, color="0.25", linestyle=(0, (6, 4)), linewidth=1.1, zorder=1)
            axes.annotate(
                f"target: {split} {target_metric.replace('top', 'top-')} {100 * fraction:g}%",
                (1, 100 * fraction),
                xycoords=("axes fraction", "data"),
                xytext=(-4, -3),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=8,
                color="0.25",
            )
    all_epochs = sorted(
        {epoch for run in runs for split in SPLIT_STYLES for epoch in run.series(f"{split}/{metric}")[0]}
    )
    if len(all_epochs) == 1:  # one epoch: a range around its point, not matplotlib's +-0.05
        axes.set_xlim(all_epochs[0] - 0.5, all_epochs[0] + 0.5)
        axes.set_xticks(all_epochs)
    axes.set_title(f"{METRIC_TITLES[metric]} per epoch")
    axes.set_xlabel("epoch (counted from 0)")
    axes.set_ylabel(METRIC_TITLES[metric].split(" (")[0].lower())
    if len(all_epochs) != 1:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if accuracy:
        axes.yaxis.set_major_formatter(PercentTicks())
    axes.grid(True, alpha=0.3)
    figure.supxlabel(AVERAGING_NOTE, fontsize=8, color="0.35")
    if single:
        axes.legend(loc="best", fontsize=9)
    else:
        _sweep_legends(figure, axes, labels)
    return figure


def _sweep_legends(figure: Figure, axes, labels: Sequence[str]) -> None:
    """Runs by colour beside the plot (wrapped labels), splits by line style inside it."""
    runs = [Line2D([], [], color=run_colour(position, len(labels)), linewidth=2.5) for position in range(len(labels))]
    wrapped = ["\n".join(textwrap.wrap(label, LEGEND_WIDTH)) or "(no overrides)" for label in labels]
    splits = [
        Line2D([], [], color="0.3", linestyle=style, marker="o", markerfacecolor="white" if split == "train" else "0.3")
        for split, style in SPLIT_STYLES.items()
    ]
    axes.add_artist(axes.legend(splits, list(SPLIT_STYLES), loc="best", fontsize=9, title="split"))
    columns = 1 if len(labels) <= 16 else 2
    figure.legend(runs, wrapped, loc="outside right upper", fontsize=8, title="run", ncols=columns)
