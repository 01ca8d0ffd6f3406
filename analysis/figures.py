"""Matplotlib figures: captioned image grids, confusion matrices, most-confused pairs; PNG bytes for TensorBoard.

Only numpy and matplotlib here: the figures are drawn from plain arrays (callbacks/validation_figures.py, report.py).
"""

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# inches per image cell, wide enough for three caption lines of a class name
CELL_WIDTH, CELL_HEIGHT = 2.3, 2.9
NAME_LENGTH = 24


def short_name(name: str) -> str:
    """A class name cut to fit a caption (Tiny-ImageNet's words.txt names can be long lists of synonyms)."""
    return name if len(name) <= NAME_LENGTH else name[: NAME_LENGTH - 1] + "…"


def captioned_grid(images: np.ndarray, captions: Sequence[str], columns: int = 4) -> Figure:
    """`images` uint8 (N, C, H, W) (a numpy array or a CPU tensor), one caption (lines separated by newlines) above each, `columns` per row."""
    rows = max(1, math.ceil(len(images) / columns))
    figure = Figure(figsize=(columns * CELL_WIDTH, rows * CELL_HEIGHT), layout="constrained")
    draw_captioned_grid(figure, images, captions, columns)
    return figure


def draw_captioned_grid(figure, images: np.ndarray, captions: Sequence[str], columns: int) -> None:
    """The grid of captioned_grid drawn into `figure`, a Figure or one of its SubFigures."""
    rows = max(1, math.ceil(len(images) / columns))
    for position, (image, caption) in enumerate(zip(images, captions)):
        axes = figure.add_subplot(rows, columns, position + 1)
        pixels = np.asarray(image).transpose(1, 2, 0)
        grayscale = pixels.shape[2] == 1
        axes.imshow(
            pixels[..., 0] if grayscale else pixels,
            cmap="gray" if grayscale else None,
            vmin=0,
            vmax=255,
            interpolation="nearest",
        )
        axes.set_title(caption, fontsize=9, loc="left")
        axes.axis("off")


def confusion_matrix_figure(matrix: np.ndarray, names: Sequence[str]) -> Figure:
    """The whole matrix (K, K) of counts, true classes down, predicted across, with the count in each cell."""
    matrix = np.asarray(matrix)
    labels = [short_name(name) for name in names]
    size = 3 + 0.6 * len(names)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xlabel("Predicted class", fontsize=15)
    axes.set_ylabel("True class", fontsize=15)
    axes.set_xticks(range(len(names)), labels, rotation=45, fontsize=10)
    axes.set_yticks(range(len(names)), labels, rotation=25, fontsize=10)
    for (true, predicted), count in np.ndenumerate(matrix):
        red, green, blue, _ = image.cmap(image.norm(count))
        dark_cell = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        axes.text(
            predicted, true, str(count), ha="center", va="center", fontsize=15, color="white" if dark_cell else "black"
        )
    axes.set_title(f"validation confusion matrix ({int(matrix.sum())} samples)")
    return figure


def most_confused_figure(matrix: np.ndarray, names: Sequence[str], num_pairs: int) -> Figure:
    """A bar per (true, predicted) pair of different classes, the `num_pairs` most frequent first."""
    confusions = np.array(matrix, copy=True)
    np.fill_diagonal(confusions, 0)
    flat = np.argsort(-confusions, axis=None, kind="stable")[:num_pairs]
    pairs = [
        (int(confusions.flat[position]), divmod(int(position), len(names)))
        for position in flat
        if confusions.flat[position] > 0
    ]
    figure = Figure(figsize=(9, 1.5 + 0.35 * max(1, len(pairs))), layout="constrained")
    axes = figure.add_subplot()
    axes.barh(range(len(pairs)), [count for count, _ in pairs])
    axes.set_yticks(
        range(len(pairs)),
        [f"{short_name(names[true])} → {short_name(names[predicted])}" for _, (true, predicted) in pairs],
    )
    axes.invert_yaxis()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("validation samples (true → predicted)")
    axes.set_title(f"the {len(pairs)} most frequent confusions")
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure as a PNG file, at its own size and dpi (as TensorBoard's add_figure renders it)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def validation_figures(
    matrix: np.ndarray,
    names: Sequence[str],
    max_matrix_classes: int,
    num_pairs: int,
    images: np.ndarray,
    captions: Sequence[str],
) -> dict[str, bytes]:
    """TensorBoard tag -> PNG: the confusion matrix (for more than `max_matrix_classes` classes the `num_pairs`
    most frequent confusions instead) and, when there are any, the misclassified images with their captions."""
    if len(names) <= max_matrix_classes:
        figures = {"val/confusion_matrix": confusion_matrix_figure(matrix, names)}
    else:
        figures = {"val/most_confused": most_confused_figure(matrix, names, num_pairs)}
    if len(images):
        figures["val/misclassified"] = captioned_grid(images, captions)
    return {tag: png_bytes(figure) for tag, figure in figures.items()}
