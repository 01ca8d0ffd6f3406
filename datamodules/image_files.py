"""Image files decoded with PIL into 8-bit pixels over their full range (the decoded cache's and predict's decoder)."""

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

PIL_MODES = {1: "L", 3: "RGB"}
GRAY_BEYOND_8_BITS = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class BadImageFile(Exception):
    """A file that is not a decodable image of the expected size; the message names it."""


def not_a_readable_file(path: Path | str) -> str | None:
    """Why `path` is not a regular file that can be read (PIL would block forever on a FIFO), or None."""
    path = Path(path)
    if path.is_file() and os.access(path, os.R_OK):
        return None
    kind = (
        "a folder" if path.is_dir() else "missing, or a broken link" if not path.exists() else "a FIFO, or unreadable"
    )
    return f"{path} is not a readable image file ({kind})"


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """`image` as 8-bit "L" or "RGB" where PIL's convert would clip or guess: 16-bit gray scaled, transparency over
    white, CMYK through its ICC profile; ValueError for float or wider-than-16-bit pixels."""
    if image.mode in GRAY_BEYOND_8_BITS:
        low, high = (image if image.mode == "F" else image.convert("I")).getextrema() or (0, 0)  # (None: no pixels)
        if image.mode == "F" or low < 0 or high > 65535:
            raise ValueError(f"holds mode {image.mode} pixels ({low}..{high}) of unknown full scale: save it as 8 bits")
        image = image.convert("I").point(lambda value: value * 255 / 65535 + 0.5).convert("L")  # rounded
    elif image.mode == "CMYK" and image.info.get("icc_profile"):
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
            image = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except ImageCms.PyCMSError:  # an unusable profile: PIL's own CMYK formula
            pass
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in image.info:  # or a colour key
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255,) * 4), image.convert("RGBA"))
    return image.convert(mode)


def decode_image(path: Path | str, image_shape: tuple[int, int, int], resize: bool = False) -> np.ndarray:
    """uint8 (C, H, W) with C channels (a grayscale JPEG becomes 3 equal ones), `resize`d as a whole (PIL bilinear, as
    predict.py takes any image) or refused when of another size; BadImageFile naming the file otherwise."""
    channels, height, width = image_shape
    if problem := not_a_readable_file(path):
        raise BadImageFile(problem)
    try:
        with Image.open(path) as image:
            image = to_mode(image, PIL_MODES[channels])
            pixels = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR) if resize else image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:  # truncated, corrupt, 32 bits
        reason = "not an image file PIL knows" if isinstance(error, UnidentifiedImageError) else error  # (names path)
        raise BadImageFile(f"{path} cannot be decoded as an image ({reason})") from error
    if pixels.shape[:2] != (height, width):
        raise BadImageFile(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels, not {width}x{height}")
    return pixels.reshape(height, width, channels).transpose(2, 0, 1)
