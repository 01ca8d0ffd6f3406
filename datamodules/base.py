"""What every image DataModule shares: loaders over ArrayImageDatasets and batch-level preprocessing."""

import logging
from collections.abc import Callable

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.array_dataset import ArrayImageDataset, already_collated
from datamodules.folds import check_fold_settings, split_into_folds
from datamodules.resumable_loader import EpochShuffleSampler, ResumableDataLoader
from user_errors import UserError

log = logging.getLogger(__name__)


class ImageDataModule(LightningDataModule):
    """Serves batches {"image": uint8 (B,C,H,W), "label": int64 (B,), "index": int64 (B,)}.

    Conversion to float and normalisation happen on whole batches after they reach the device
    (`on_after_batch_transfer`), so the GPU does that work when there is one and the host ships
    4x fewer bytes; so does the random augmentation of training batches, when `augment` is given.
    Subclasses set `input_shape`, `num_classes`, `mean`, `std`, `class_names` and fill `train_set`,
    `val_set`, `test_set` in `setup`; `trainer.predict` runs over `predict_split`.
    With `num_folds` set, `setup` validates on fold `fold` of the training set instead
    (`cross_validation_split`); `split_seed` fixes the validation split either way.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # the split trainer.predict runs over
    predict_split = "test"

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        num_folds: int | None = None,
        fold: int = 0,
        split_seed: int = 0,
        on_device: bool = False,
    ):
        """pin_memory: batches in page-locked memory, so that their copies to the GPU (which Lightning issues
        non-blocking) overlap computation; None: when training on a GPU. on_device: on a GPU, copy each split
        to it once, whole, and index batches there (no copies per batch, no workers); ignored on the CPU."""
        super().__init__()
        check_fold_settings(num_folds, fold)
        # K-fold cross-validation (datamodules/folds.py): null keeps the dataset's own validation split
        self.num_folds = num_folds
        self.fold = fold
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.on_device = on_device
        # e.g. datamodules.batch_augment.BatchAugment: random crops/flips of uint8 training batches on the device
        self.augment = augment
        # the training order's seed, drawn from the run's seeded generator: the same `seed` gives the same order
        self.shuffle_seed = int(torch.randint(2**31, ()))
        self.train_set: ArrayImageDataset | None = None
        self.val_set: ArrayImageDataset | None = None
        self.test_set: ArrayImageDataset | None = None
        # normalize()'s (scale, shift) by device, made at its first batch there
        self._normalizations: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def class_names(self) -> list[str]:
        raise NotImplementedError

    def source(self, split: str, index: int) -> str:
        """Where sample `index` (the batch's "index") of `split` comes from: a file path when the dataset has files."""
        return f"{split}[{index}]"

    def dataset(self, split: str) -> ArrayImageDataset:
        """The dataset of `split` ("train", "val" or "test"), once `setup` has run."""
        datasets = {"train": self.train_set, "val": self.val_set, "test": self.test_set}
        if split not in datasets:
            raise UserError(f"There is no split {split!r}: the splits are {sorted(datasets)}.")
        return datasets[split]

    def cross_validation_split(self, train_set: Dataset) -> tuple[Dataset, Dataset]:
        """(train, val) with num_folds set: fold `fold` of `train_set` validates, the other folds train."""
        return split_into_folds(train_set, self.num_folds, self.fold, self.split_seed)

    def train_dataloader(self) -> DataLoader:
        """Shuffled by epoch and resumable mid-epoch (datamodules/resumable_loader.py)."""
        sharding = (
            self.trainer.distributed_sampler_kwargs if self.trainer else None
        ) or {}  # DDP: this process's share
        train_set = self._placed(self.train_set)
        # the batches' positions are cut where the images are: on the GPU when they were placed there
        device = train_set.images.device if self._is_on_gpu(train_set) else None
        sampler = EpochShuffleSampler(len(train_set), self.shuffle_seed, self.batch_size, device=device, **sharding)
        return ResumableDataLoader(
            train_set, sampler=sampler, generator=torch.Generator(), **self._loader_options(train_set)
        )

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.dataset(self.predict_split))

    def _evaluation_loader(self, dataset: Dataset) -> DataLoader:
        dataset = self._placed(dataset)
        return DataLoader(dataset, batch_size=self.eval_batch_size, **self._loader_options(dataset))

    def _training_device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _placed(self, dataset: Dataset) -> Dataset:
        """The dataset, moved whole to the training GPU once when `on_device` asks for it (in-memory arrays only)."""
        device = self._training_device()
        if self.on_device and device.type == "cuda" and isinstance(dataset, ArrayImageDataset):
            dataset.to(device)
        return dataset

    @staticmethod
    def _is_on_gpu(dataset: Dataset) -> bool:
        return (
            isinstance(dataset, ArrayImageDataset)
            and isinstance(dataset.images, torch.Tensor)
            and dataset.images.is_cuda
        )

    def _loader_options(self, dataset: Dataset) -> dict:
        # batches cut on the GPU: nothing to pin, no workers (CUDA does not fork)
        on_device = self._is_on_gpu(dataset)
        num_workers = 0 if on_device else self.num_workers
        pin_memory = self._training_device().type == "cuda" if self.pin_memory is None else self.pin_memory
        return dict(
            num_workers=num_workers,
            pin_memory=pin_memory and not on_device,
            persistent_workers=num_workers > 0,
            collate_fn=already_collated,
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B,C,H,W) in [0, 255] -> float, normalised with the dataset's mean and std."""
        if images.device not in self._normalizations:  # made once: 6 small tensor operations, 25 us of every batch
            mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
            self._normalizations[images.device] = (1.0 / (255.0 * std), -mean / std)
        scale, shift = self._normalizations[images.device]
        # (x / 255 - mean) / std as x * scale + shift, in place on a float copy: 3 passes over the batch instead of 5
        return images.to(torch.float32, copy=True).mul_(scale).add_(shift)

    def on_after_batch_transfer(self, batch: dict | torch.Tensor, dataloader_idx: int) -> dict | torch.Tensor:
        if not isinstance(batch, dict):  # the module's example_input_array (summary, graph) is a float input already
            return batch
        images = batch["image"]
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            images = self.augment(images)
        return {**batch, "image": self.normalize(images)}
