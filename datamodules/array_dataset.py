"""A dataset over decoded images held as one uint8 array, fetched a whole batch at a time."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class ArrayImageDataset(Dataset):
    """Images (N, C, H, W) uint8, labels (N,) int64, and each sample's index in its source split.

    `__getitems__` lets the DataLoader fetch a batch with one indexing operation instead of one
    Python call and one tensor per sample; batches come out already collated as a dict.
    """

    def __init__(self, images: torch.Tensor | np.ndarray, labels: torch.Tensor | None, source_index: torch.Tensor):
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.source_index = source_index

    def to(self, device: torch.device) -> "ArrayImageDataset":
        """Moves the images, labels and indices to `device` (in place); batches are then cut there."""
        if isinstance(self.images, np.ndarray):  # e.g. a memory-mapped cache: read whole
            self.images = torch.from_numpy(np.ascontiguousarray(self.images))
        self.images = self.images.to(device)
        self.labels = self.labels.to(device) if self.labels is not None else None
        self.source_index = self.source_index.to(device)
        return self

    def take(self, positions: torch.Tensor) -> "ArrayImageDataset":
        """A new dataset of the samples at `positions` (a copy), in that order, keeping their source indices."""
        batch = self.__getitems__(positions)
        return ArrayImageDataset(batch["image"], batch.get("label"), batch["index"])

    def __len__(self) -> int:
        return len(self.source_index)

    def __getitem__(self, position: int) -> dict[str, Any]:
        return _first(self.__getitems__([position]))

    def __getitems__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        positions = torch.as_tensor(positions, dtype=torch.long)
        if isinstance(self.images, np.ndarray):  # e.g. a memory-mapped cache: reads only these rows
            images = torch.from_numpy(self.images[positions.numpy()])
        else:
            positions = positions.to(self.images.device)  # one copy of the indices when the images are on a GPU
            images = self.images[positions]
        batch = {"image": images, "index": self.source_index[positions]}
        if self.labels is not None:
            batch["label"] = self.labels[positions]
        return batch


def _first(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value[0] for key, value in batch.items()}


def already_collated(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """collate_fn for datasets whose __getitems__ returns a finished batch."""
    return batch
