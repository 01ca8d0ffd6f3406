"""Image files decoded with PIL into 8-bit pixels over their full range (the decoded cache's and predict's decoder)."""

import io
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

PIL_MODES = {1: "L", 3: "RGB"}
SIXTEEN_BIT_GRAY_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


class BadImageFile(Exception):
    """A file that is not a decodable image of the expected size; the message names it."""


class UnconvertiblePixels(ValueError):
    """Pixels whose range is unknown (float, integers beyond 16 bits): 8 bits only with a guess."""


def not_a_readable_file(path: Path | str) -> str | None:
    """Why `path` is not a regular readable file (PIL would block forever on a FIFO), or None."""
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"{path} is a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        return f"{path} does not exist"
    except OSError as error:
        return f"{path} cannot be read ({error.strerror or error})"
    if stat.S_ISDIR(status.st_mode):
        return f"{path} is a folder, not an image file"
    if not stat.S_ISREG(status.st_mode):
        return f"{path} is not a regular file (a FIFO, socket or device), so it is not opened"
    if not os.access(path, os.R_OK):
        return f"{path} cannot be read (no read permission)"
    return None


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """`image` as 8-bit "L" or "RGB" where PIL's convert would clip or guess: 16-bit gray scaled, transparency over
    white, CMYK through its ICC profile; UnconvertiblePixels for float or wider-than-16-bit pixels."""
    if image.mode in SIXTEEN_BIT_GRAY_MODES:
        low, high = image.convert("I").getextrema() or (0, 0)  # (None: no pixels)
        if low < 0 or high > 65535:
            raise UnconvertiblePixels(
                f"holds 32-bit integer pixels ({low}..{high}, mode {image.mode}) that cannot be scaled to 8 bits without a guess"
            )
        image = image.convert("I").point(lambda value: value * 255 / 65535 + 0.5).convert("L")  # rounded
    elif image.mode == "F":
        raise UnconvertiblePixels("holds floating-point pixels (mode F) whose full scale is unknown")
    elif image.mode == "CMYK" and image.info.get("icc_profile"):
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
            image = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except ImageCms.PyCMSError:  # an unusable profile: PIL's own CMYK formula
            pass
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in image.info:  # or a colour key
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255,) * 4), image.convert("RGBA"))
    return image.convert(mode)


def decode_image(path: Path | str, image_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 (C, H, W) with C channels (a grayscale JPEG becomes 3 equal ones); BadImageFile naming the file otherwise."""
    channels, height, width = image_shape
    if problem := not_a_readable_file(path):
        raise BadImageFile(problem)
    try:
        with Image.open(path) as image:
            pixels = np.asarray(to_mode(image, PIL_MODES[channels]))
    except UnidentifiedImageError as error:  # its message repeats the path
        raise BadImageFile(f"{path} cannot be decoded as an image (not an image file PIL knows)") from error
    except UnconvertiblePixels as error:
        raise BadImageFile(f"{path} {error}; save it as an 8-bit image") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:  # truncated, corrupt
        raise BadImageFile(f"{path} cannot be decoded as an image ({error})") from error
    if pixels.shape[:2] != (height, width):
        raise BadImageFile(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels, not {width}x{height}")
    return pixels.reshape(height, width, channels).transpose(2, 0, 1)
