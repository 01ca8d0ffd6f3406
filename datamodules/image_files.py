"""Image files decoded with PIL one at a time: the decoder of the decoded cache and of the per-image path."""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from core.errors import UserError

log = logging.getLogger(__name__)

PIL_MODES = {1: "L", 3: "RGB"}


class BadImageFile(Exception):
    """A file that is not a decodable image of the expected size; the message names it."""


def decode_image(path: Path | str, image_shape: tuple[int, int, int]) -> np.ndarray:
    """The image at `path` as uint8 (C, H, W), converted to C channels (a grayscale JPEG becomes 3 equal channels)."""
    channels, height, width = image_shape
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert(PIL_MODES[channels]))
    except UnidentifiedImageError as error:  # its message repeats the path
        raise BadImageFile(f"{path} cannot be decoded as an image (not an image file PIL knows)") from error
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

    def __init__(self, files: Sequence[Path], labels: torch.Tensor | None, source_index: torch.Tensor, image_shape: tuple[int, int, int], skip_bad_files: bool = False):
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
        for position in torch.as_tensor(positions, dtype=torch.long).tolist():  # ints: file list positions, and keys of _reported
            try:
                images.append(decode_image(self.files[position], self.image_shape))
                kept.append(position)
            except BadImageFile as error:
                if not self.skip_bad_files:
                    raise UserError(f"{error}: replace it with the original file, or set data.skip_bad_files=true to skip bad files.") from error
                if position not in self._reported:
                    self._reported.add(position)
                    log.warning(f"Skipping a bad file: {error}.")
        kept = torch.as_tensor(kept, dtype=torch.long)
        batch = {"image": torch.from_numpy(np.stack(images)) if images else torch.empty(0, *self.image_shape, dtype=torch.uint8), "index": self.source_index[kept]}
        if self.labels is not None:
            batch["label"] = self.labels[kept]
        return batch
