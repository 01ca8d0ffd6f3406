"""Matplotlib figures of images with captions, saved as PNG or logged to TensorBoard (SummaryWriter.add_figure)."""

import math
from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

# inches per image cell, wide enough for three caption lines of a class name
CELL_WIDTH, CELL_HEIGHT = 2.3, 2.9
NAME_LENGTH = 24


def short_name(name: str) -> str:
    """A class name cut to fit a caption (Tiny-ImageNet's words.txt names can be long lists of synonyms)."""
    return name if len(name) <= NAME_LENGTH else name[: NAME_LENGTH - 1] + "…"


def captioned_grid(images: torch.Tensor, captions: Sequence[str], columns: int = 4) -> Figure:
    """`images` uint8 (N, C, H, W), one caption (lines separated by newlines) above each, `columns` per row."""
    rows = max(1, math.ceil(len(images) / columns))
    figure = Figure(figsize=(columns * CELL_WIDTH, rows * CELL_HEIGHT), layout="constrained")
    for position, (image, caption) in enumerate(zip(images, captions)):
        axes = figure.add_subplot(rows, columns, position + 1)
        pixels = image.permute(1, 2, 0).cpu().numpy()
        grayscale = pixels.shape[2] == 1
        axes.imshow(pixels[..., 0] if grayscale else pixels, cmap="gray" if grayscale else None, vmin=0, vmax=255, interpolation="nearest")
        axes.set_title(caption, fontsize=9, loc="left")
        axes.axis("off")
    return figure
