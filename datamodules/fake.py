"""Random images of a chosen shape (the classic ImageNet example's --dummy): speed runs without a dataset."""

import torch

from datamodules.array_dataset import ArrayImageDataset
from datamodules.base import ImageDataModule


class FakeDataModule(ImageDataModule):
    """Uniform random uint8 images and labels, fixed by `seed`; nothing in them can be learned."""

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (3, 64, 64),
        num_classes: int = 200,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        seed: int = 0,
        **loader_options,
    ):
        super().__init__(val_size=val_size, **loader_options)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.mean = (0.5,) * self.input_shape[0]
        self.std = (0.25,) * self.input_shape[0]
        self.sizes = {"train": train_size, "val": self.val_size, "test": test_size}
        self.seed = seed

    @property
    def class_names(self) -> list[str]:
        return [f"class_{index}" for index in range(self.num_classes)]

    def read_splits(self, stage: str | None) -> tuple[ArrayImageDataset, ArrayImageDataset, ArrayImageDataset]:
        generator = torch.Generator().manual_seed(self.seed)
        splits = []
        for size in self.sizes.values():
            images = torch.randint(0, 256, (size, *self.input_shape), dtype=torch.uint8, generator=generator)
            labels = torch.randint(0, self.num_classes, (size,), generator=generator)
            splits.append(ArrayImageDataset(images, labels, torch.arange(size)))
        return tuple(splits)
