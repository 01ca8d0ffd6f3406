"""Any image file brought to a network's input: C x H x W uint8, as the datasets serve their images.

The mode is converted as the datasets convert theirs (datamodules/image_files.to_mode: "L" for one
channel, "RGB" for three; palette images through their palette, 16-bit grayscale scaled to 8 bits,
transparent pixels made white), then an image of another size is resized to H x W with PIL's
bilinear filter (antialiased when shrinking): the whole image, its aspect ratio not kept.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from datamodules.image_files import PIL_MODES, BadImageFile, to_mode

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
RESIZE_FILTER = Image.Resampling.BILINEAR


def load_as_input(path: Path | str, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (C, H, W) for the network; BadImageFile, naming the file, when it cannot be read as an image."""
    channels, height, width = input_shape
    try:
        with Image.open(path) as image:
            converted = to_mode(image, PIL_MODES[channels])
            if converted.size != (width, height):
                converted = converted.resize((width, height), RESIZE_FILTER)
            pixels = np.asarray(converted)
    except FileNotFoundError as error:
        raise BadImageFile(f"{path} does not exist") from error
    except UnidentifiedImageError as error:
        raise BadImageFile(f"{path} cannot be read as an image (not an image file PIL knows)") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:  # truncated, corrupt
        raise BadImageFile(f"{path} cannot be read as an image ({error})") from error
    return torch.from_numpy(pixels.reshape(height, width, channels).transpose(2, 0, 1).copy())


def image_files(paths: list[str]) -> list[Path]:
    """The files named, a folder standing for the image files in it (sorted by name)."""
    found = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(
                child for child in path.iterdir() if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            found.append(path)
    return found
