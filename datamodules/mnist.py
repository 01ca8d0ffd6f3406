"""MNIST: the official 60k training images (split into train and a seeded validation set) and the 10k test images."""

import logging
from pathlib import Path

import torch
from torchvision.datasets import MNIST

from core.errors import UserError
from datamodules.array_dataset import ArrayImageDataset
from datamodules.base import ImageDataModule

log = logging.getLogger(__name__)

OFFICIAL_TRAIN_SIZE = 60_000


class MNISTDataModule(ImageDataModule):
    input_shape = (1, 28, 28)
    num_classes = 10
    mean = (0.1307,)
    std = (0.3081,)

    def __init__(self, data_dir: str, val_size: int = 5000, download: bool = True, **loader_options):
        super().__init__(**loader_options)
        self.data_dir = Path(data_dir)
        self.val_size = val_size
        self.download = download
        # each sample's source is its IDX file and position: the paths are made once, not per sample
        self._image_files = {"train": str(self.raw_folder / "train-images-idx3-ubyte"), "test": str(self.raw_folder / "t10k-images-idx3-ubyte")}

    @property
    def raw_folder(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    @property
    def class_names(self) -> list[str]:
        return list(MNIST.classes)

    def source(self, split: str, index: int) -> str:
        """The IDX file and the image's position in it (validation images come from the training file)."""
        return f"{self._image_files['test' if split == 'test' else 'train']}[{index}]"

    def prepare_data(self) -> None:
        """Download the files once per node when they are absent."""
        if not all(path.is_file() for path in self._raw_files()):
            for train in (True, False):
                self._read(train, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = self._read(train=True, download=False)
        if self.num_folds:  # validation is a fold of the 60k; val_size does not apply
            self.train_set, self.val_set = self.cross_validation_split(ArrayImageDataset(images, labels, torch.arange(len(images))))
        else:
            self._carve_val_set(images, labels)
        test_images, test_labels = self._read(train=False, download=False)
        self.test_set = ArrayImageDataset(test_images, test_labels, torch.arange(len(test_images)))

    def _carve_val_set(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """val_size images drawn with split_seed validate, the rest train."""
        if not 0 < self.val_size < len(images):
            raise UserError(f"data.val_size must be between 1 and {len(images) - 1} (images carved from the training set for validation), got {self.val_size}.")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.split_seed))
        val_index, train_index = order[: self.val_size].sort().values, order[self.val_size :]
        self.train_set = ArrayImageDataset(images[train_index], labels[train_index], train_index)
        self.val_set = ArrayImageDataset(images[val_index], labels[val_index], val_index)

    def _read(self, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        split = "training" if train else "test"
        try:
            dataset = MNIST(str(self.data_dir), train=train, download=download)
        except (RuntimeError, AssertionError, ValueError, TypeError, OSError) as error:
            reason = f"{error.__class__.__name__}: {_first_line(error)}" if _first_line(error) else error.__class__.__name__
            if not all(path.is_file() for path in self._raw_files()):
                how = "could not be downloaded" if download else "are missing (data.download=false)"
                raise UserError(
                    f"The MNIST {split} files are not in {self.raw_folder} and {how}: put the official uncompressed "
                    f"IDX files there, or point data.data_dir at the folder that holds MNIST/raw/ ({reason})."
                ) from error
            raise UserError(  # present but unreadable: a wrong header, a cut-off file
                f"The MNIST {split} files in {self.raw_folder} are corrupt or not IDX files ({reason}): "
                "replace them with the official files, or delete them so that they are downloaded again."
            ) from error
        return dataset.data.unsqueeze(1), dataset.targets

    def _raw_files(self) -> list[Path]:
        return [self.raw_folder / Path(url).stem for url, _ in MNIST.resources]


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else ""
