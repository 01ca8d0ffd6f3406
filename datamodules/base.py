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
    A dataset subclass sets `input_shape`, `num_classes`, `mean`, `std`, `class_names` and says how to
    read its labelled splits (`read_splits`); `setup`, here, chooses what validates. `trainer.predict`
    runs over `predict_split`.
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
        val_size: int = 5000,
        num_folds: int | None = None,
        fold: int = 0,
        split_seed: int = 0,
        on_device: bool = False,
    ):
        """pin_memory: batches in page-locked memory, so that their copies to the GPU (which Lightning issues
        non-blocking) overlap computation; None: when training on a GPU. on_device: on a GPU, copy each split
        to it once, whole, and index batches there (no copies per batch, no workers); ignored on the CPU.
        val_size: the images drawn from the training split (with `split_seed`) to validate on, for a dataset
        without a validation split of its own."""
        super().__init__()
        check_fold_settings(num_folds, fold)
        # K-fold cross-validation (datamodules/folds.py): null keeps the dataset's own validation split
        self.num_folds = num_folds
        self.fold = fold
        self.split_seed = split_seed
        self.val_size = val_size
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

    def read_splits(self, stage: str | None) -> tuple[Dataset | None, Dataset | None, Dataset | None]:
        """The dataset's labelled (train, val, test) splits, the one thing a dataset subclass must say.

        val None: the dataset has no validation split of its own, so `val_size` images of train (an
        ArrayImageDataset then) validate. A dataset that reads its splits by stage may leave out those
        `stage` does not serve (None); called again for a later stage, it returns those it read before.
        """
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """The splits `read_splits` gives, with the validation split chosen here, the same for every dataset:
        fold `fold` of train with num_folds set, else the dataset's own, else `val_size` images carved from train.
        A stage whose splits an earlier stage set up reads nothing."""
        if all(self.dataset(split) is not None for split in self._splits_of(stage)):
            return
        train, val, test = self.read_splits(stage)
        if self.num_folds and train is not None:  # validation is a fold of train; val_size does not apply
            train, val = self.cross_validation_split(train)
        elif val is None and train is not None:
            train, val = self.carve_val_set(train)
        self.train_set, self.val_set, self.test_set = train, val, test

    def _splits_of(self, stage: str | None) -> tuple[str, ...]:
        """The splits a stage serves; None (Lightning's "all stages"): every one."""
        return {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": (self.predict_split,)}.get(
            stage, ("train", "val", "test", self.predict_split)
        )

    def cross_validation_split(self, train_set: Dataset) -> tuple[Dataset, Dataset]:
        """(train, val) with num_folds set: fold `fold` of `train_set` validates, the other folds train."""
        return split_into_folds(train_set, self.num_folds, self.fold, self.split_seed)

    def carve_val_set(self, train_set: ArrayImageDataset) -> tuple[ArrayImageDataset, ArrayImageDataset]:
        """(train, val): `val_size` images drawn with `split_seed` validate (in their order in the split), the rest train."""
        if not 0 < self.val_size < len(train_set):
            raise UserError(
                f"data.val_size must be between 1 and {len(train_set) - 1} (images carved from the training set for validation), got {self.val_size}."
            )
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(self.split_seed))
        val_positions, train_positions = order[: self.val_size].sort().values, order[self.val_size :]
        return train_set.take(train_positions), train_set.take(val_positions)

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
        if images.device not in self._normalizations:  # made once per device, not in every batch
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
