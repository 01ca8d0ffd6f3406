"""Captioned image grids (compare.py's contact sheet): matplotlib, since torchvision's make_grid draws no captions."""

import math
from collections.abc import Sequence

import numpy as np

# inches per image cell, wide enough for three caption lines of a class name
CELL_WIDTH, CELL_HEIGHT = 2.3, 2.9
NAME_LENGTH = 24


def short_name(name: str) -> str:
    """A class name cut to fit a caption (Tiny-ImageNet's words.txt names can be long lists of synonyms)."""
    return name if len(name) <= NAME_LENGTH else name[: NAME_LENGTH - 1] + "…"


def draw_captioned_grid(figure, images: np.ndarray, captions: Sequence[str], columns: int) -> None:
    """uint8 images (N, C, H, W) into `figure` (a Figure or SubFigure), `columns` per row, each under its caption."""
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
