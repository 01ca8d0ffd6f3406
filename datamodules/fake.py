"""Random images of a chosen shape (the classic ImageNet example's --dummy): speed runs without a dataset."""

import torch

from datamodules.base import ArrayImageDataset, ImageDataModule


class FakeDataModule(ImageDataModule):
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
        self.input_shape, self.num_classes, self.seed = tuple(input_shape), num_classes, seed
        self.mean, self.std = (0.5,) * self.input_shape[0], (0.25,) * self.input_shape[0]
        self.sizes = (train_size, val_size, test_size)
        self.class_names = [f"class_{index}" for index in range(num_classes)]

    def read_splits(self, stage: str | None) -> tuple[ArrayImageDataset, ...]:
        generator = torch.Generator().manual_seed(self.seed)
        return tuple(
            ArrayImageDataset(
                torch.randint(0, 256, (size, *self.input_shape), dtype=torch.uint8, generator=generator),
                torch.randint(0, self.num_classes, (size,), generator=generator),
                torch.arange(size),
            )
            for size in self.sizes
        )
