"""Image files decoded with PIL one at a time: the decoder of the decoded cache and of the per-image path."""

import io
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, UnidentifiedImageError
from torch.utils.data import Dataset

from user_errors import UserError

log = logging.getLogger(__name__)

PIL_MODES = {1: "L", 3: "RGB"}
SIXTEEN_BIT_GRAY_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
TRANSPARENT_SHOWS_AS = (255, 255, 255, 255)  # transparent pixels become white, as on a page or in a browser


class BadImageFile(Exception):
    """A file that is not a decodable image of the expected size; the message names it."""


def not_a_readable_file(path: Path | str) -> str | None:
    """Why `path` is not a regular file this process can read (a broken link, a folder, a FIFO, ...), or None.

    Checked before opening: PIL would block forever on a FIFO and repeat the path in its own errors.
    """
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


class UnconvertiblePixels(ValueError):
    """Pixels that cannot be brought to 8 bits per channel without guessing their range."""


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """`image` as 8-bit `mode` ("L" or "RGB") over its full range, where PIL's plain convert would clip or guess.

    16-bit grayscale (what PIL makes of a 16-bit PNG or TIFF) is scaled to 8 bits, not clipped at 255;
    transparent pixels (RGBA, LA, P with transparency) are composited over white instead of showing
    whatever colour they store; CMYK goes through its embedded ICC profile to sRGB when it has one.
    Raises UnconvertiblePixels for pixels whose range is unknown (float, 32-bit integers beyond 16 bits).
    """
    if image.mode in SIXTEEN_BIT_GRAY_MODES or image.mode == "I":
        pixels = np.asarray(image).astype(np.int64)
        low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
        if low < 0 or high > 65535:  # mode I: 16-bit files are opened as I too, 32-bit ones have no known full scale
            raise UnconvertiblePixels(
                f"holds 32-bit integer pixels ({low}..{high}, mode {image.mode}) that cannot be scaled to 8 bits without a guess"
            )
        image = Image.fromarray(((pixels * 255 + 32767) // 65535).astype(np.uint8), "L")  # 0..65535 to 0..255, rounded
    elif image.mode == "F":
        raise UnconvertiblePixels("holds floating-point pixels (mode F) whose full scale is unknown")
    elif image.mode == "CMYK" and image.info.get("icc_profile"):
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
            image = ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except ImageCms.PyCMSError:  # an unusable profile: PIL's own CMYK formula below
            pass
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    elif image.mode in ("L", "RGB") and "transparency" in image.info:  # a PNG's colour key
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        image = Image.alpha_composite(Image.new("RGBA", image.size, TRANSPARENT_SHOWS_AS), image.convert("RGBA"))
    return image.convert(mode)


def decode_image(path: Path | str, image_shape: tuple[int, int, int]) -> np.ndarray:
    """The image at `path` as uint8 (C, H, W), converted to C channels (a grayscale JPEG becomes 3 equal channels)."""
    channels, height, width = image_shape
    problem = not_a_readable_file(path)
    if problem:
        raise BadImageFile(problem)
    try:
        with Image.open(path) as image:
            pixels = np.asarray(to_mode(image, PIL_MODES[channels]))
    except UnidentifiedImageError as error:  # its message repeats the path
        raise BadImageFile(f"{path} cannot be decoded as an image (not an image file PIL knows)") from error
    except UnconvertiblePixels as error:
        raise BadImageFile(f"{path} {error}; save it as an 8-bit image") from error
    except PermissionError as error:
        raise BadImageFile(f"{path} cannot be read ({error.strerror})") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:  # truncated, corrupt
        raise BadImageFile(f"{path} cannot be decoded as an image ({error})") from error
    if pixels.shape[:2] != (height, width):
        raise BadImageFile(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels, not {width}x{height}")
    return pixels.reshape(height, width, channels).transpose(2, 0, 1)


class ImageFileDataset(Dataset):
    """Decodes each image when it is fetched (no cache); batches as ArrayImageDataset serves them.

    Nothing is checked ahead: a bad file stops the run when a batch meets it, or, with
    `skip_bad_files`, is left out of its batch with a warning (once per loader process).
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: torch.Tensor | None,
        source_index: torch.Tensor,
        image_shape: tuple[int, int, int],
        skip_bad_files: bool = False,
    ):
        self.files = list(files)
        self.labels = labels
        self.source_index = source_index
        self.image_shape = tuple(image_shape)
        self.skip_bad_files = skip_bad_files
        self._reported: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([position]).items()}

    def __getitems__(self, positions: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        images, kept = [], []
        for position in torch.as_tensor(
            positions, dtype=torch.long
        ).tolist():  # ints: file list positions, and keys of _reported
            try:
                images.append(decode_image(self.files[position], self.image_shape))
                kept.append(position)
            except BadImageFile as error:
                if not self.skip_bad_files:
                    raise UserError(
                        f"{error}: replace it with the original file, or set data.skip_bad_files=true to skip bad files."
                    ) from error
                if position not in self._reported:
                    self._reported.add(position)
                    log.warning(f"Skipping a bad file: {error}.")
        kept = torch.as_tensor(kept, dtype=torch.long)
        batch = {
            "image": torch.from_numpy(np.stack(images))
            if images
            else torch.empty(0, *self.image_shape, dtype=torch.uint8),
            "index": self.source_index[kept],
        }
        if self.labels is not None:
            batch["label"] = self.labels[kept]
        return batch
