"""MNIST, Fashion-MNIST and KMNIST, read with torchvision's class of that name from the official IDX files."""

import gzip
import logging
import zlib
from pathlib import Path

import torch
from torchvision.datasets import KMNIST, MNIST, FashionMNIST

from checkpoints.loading import atomic_write_bytes
from datamodules.base import ArrayImageDataset, ImageDataModule
from user_errors import UserError, writing

log = logging.getLogger(__name__)

# MNIST's IDX files ship gzipped so that a fresh clone trains offline (git and gzip's CRC guard them against damage)
SHIPPED_COPY = Path(__file__).parent / "mnist_idx"
# the classes data.torchvision_dataset may name, with the mean and std of their 60k training pixels
DATASETS = {
    "MNIST": (MNIST, (0.1307,), (0.3081,)),
    "FashionMNIST": (FashionMNIST, (0.2860,), (0.3530,)),
    "KMNIST": (KMNIST, (0.1918,), (0.3483,)),
}


def unpack_shipped_copy(raw_folder: Path) -> bool:
    """Unpack the shipped IDX files into `raw_folder`, each written whole; False if absent."""
    shipped = [SHIPPED_COPY / Path(file).name for file, _ in MNIST.resources]
    if not all(path.is_file() for path in shipped):
        return False
    for path in shipped:  # all four: prepare_data calls it when any is missing
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as error:  # a CRC that does not match, a truncated or corrupt stream
            raise UserError(
                f"The shipped copy {path} is damaged ({error}): restore it with git checkout, or delete it to download MNIST instead."
            ) from error
        atomic_write_bytes(data, raw_folder / path.stem)  # a full disk, a kill: no half-unpacked file stays behind
    log.info(f"MNIST unpacked from the copy shipped in {SHIPPED_COPY} into {raw_folder}")
    return True


class MNISTDataModule(ImageDataModule):
    input_shape = (1, 28, 28)
    num_classes = 10

    def __init__(
        self,
        data_dir: str,
        torchvision_dataset: str = "MNIST",
        download: bool = True,
        use_shipped_copy: bool = True,
        **loader_options,
    ):
        super().__init__(**loader_options)
        if torchvision_dataset not in DATASETS:  # one of three classes, never one named by a setting
            raise UserError(
                f"data.torchvision_dataset must be one of {', '.join(DATASETS)}, got {torchvision_dataset!r}."
            )
        self.torchvision_dataset, self.data_dir = torchvision_dataset, Path(data_dir)
        self.dataset_class, self.mean, self.std = DATASETS[torchvision_dataset]
        self.class_names = list(self.dataset_class.classes)
        self.download, self.use_shipped_copy = download, use_shipped_copy
        self.raw_folder = self.data_dir / torchvision_dataset / "raw"  # where torchvision's class reads them

    def source(self, split: str, index: int) -> str:
        """The IDX file and the image's position in it (validation images come from the training file)."""
        return f"{self.raw_folder / ('t10k' if split == 'test' else 'train')}-images-idx3-ubyte[{index}]"

    def prepare_data(self) -> None:
        if all((self.raw_folder / Path(url).stem).is_file() for url, _ in self.dataset_class.resources):
            return
        shipped = self.use_shipped_copy and self.torchvision_dataset == "MNIST"  # the shipped copy is MNIST's only
        fix = "point data.data_dir at a folder you can write to, with room for them"  # a file, a read-only mount, full
        with writing(f"the {self.torchvision_dataset} files into {self.raw_folder}", fix):
            if not (shipped and unpack_shipped_copy(self.raw_folder)):
                self._read(True, download=self.download)  # torchvision's class fetches the test files too

    def read_splits(self, stage: str | None) -> tuple[ArrayImageDataset, None, ArrayImageDataset]:
        """The official training and test files; validation is carved from the training images (val_size)."""
        return self._read(True), None, self._read(False)

    def _read(self, train: bool, download: bool = False) -> ArrayImageDataset:
        """A split's images, labels and source indices; one sentence when its files are missing, corrupt or disagree."""
        name, split = self.torchvision_dataset, "training" if train else "test"
        try:
            dataset = self.dataset_class(str(self.data_dir), train=train, download=download)
            images, labels = dataset.data.unsqueeze(1), dataset.targets
            if len(images) != len(labels) or int(labels.max()) >= self.num_classes:
                raise ValueError(f"{len(images)} images, {len(labels)} labels up to {int(labels.max())}")
        except (RuntimeError, AssertionError, ValueError, TypeError, OSError) as error:
            reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}".removesuffix(": ")
            raise UserError(
                f"The {name} {split} files in {self.raw_folder} are missing or not the official IDX files of "
                f"{self.num_classes} classes ({reason}): put the official uncompressed IDX files there (data.download=true "
                f"downloads them), or point data.data_dir at the folder that holds {name}/raw/."
            ) from error
        return ArrayImageDataset(images, labels, torch.arange(len(images)))
