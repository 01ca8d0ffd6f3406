"""What every image DataModule shares: splits held as uint8 arrays, folds, resumable loaders, normalisation."""

import logging
import math
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchdata.stateful_dataloader import StatefulDataLoader

from user_errors import UserError

log = logging.getLogger(__name__)


class ArrayImageDataset(Dataset):
    """uint8 images (N, C, H, W), labels (N,) or None, each sample's index in its split; a batch is one indexing operation."""

    def __init__(self, images: torch.Tensor | np.ndarray, labels: torch.Tensor | None, source_index: torch.Tensor):
        self.images, self.labels, self.source_index = images, labels, source_index

    def to(self, device: torch.device) -> None:
        if isinstance(self.images, np.ndarray):  # a memory-mapped cache: read whole
            self.images = torch.from_numpy(np.ascontiguousarray(self.images))
        self.images, self.source_index = self.images.to(device), self.source_index.to(device)
        self.labels = self.labels.to(device) if self.labels is not None else None

    def __len__(self) -> int:
        return len(self.source_index)

    def __getitems__(self, positions) -> dict[str, torch.Tensor]:
        positions = torch.as_tensor(positions, dtype=torch.long)
        if isinstance(self.images, np.ndarray):  # a memory-mapped cache: reads only these rows
            images = torch.from_numpy(self.images[positions.numpy()])
        else:
            positions = positions.to(self.images.device)
            images = self.images[positions]
        batch = {"image": images, "index": self.source_index[positions]}
        if self.labels is not None:
            batch["label"] = self.labels[positions]
        return batch

    def __getitem__(self, positions) -> dict[str, torch.Tensor]:  # the training loader's item: a batch's positions
        return self.__getitems__(positions)


def already_collated(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


class FoldSubset(Subset):
    """Samples of a dataset at `positions`, served in whole batches with their labels and source indices."""

    def __init__(self, dataset: Dataset, indices: torch.Tensor):
        super().__init__(dataset, indices)
        self.labels, self.source_index = dataset.labels[indices], dataset.source_index[indices]

    def __getitems__(self, positions) -> dict[str, torch.Tensor]:
        return self.dataset.__getitems__(self.indices[torch.as_tensor(positions, dtype=torch.long)])

    __getitem__ = __getitems__


def check_fold_settings(num_folds: int | None, fold: int) -> None:
    # a fold without num_folds: every "fold" of a sweep would silently train the same split
    if not (fold == 0 if num_folds is None else num_folds >= 2 and 0 <= fold < num_folds):
        raise UserError(
            f"data.fold={fold} is not a fold of data.num_folds={'null' if num_folds is None else num_folds}: data.num_folds "
            "is at least 2 (train on K-1 folds, validate on one) and data.fold counts them from 0 (e.g. data.num_folds=5 "
            "data.fold=4); data.num_folds=null with data.fold=0 keeps the single seeded validation split."
        )


def fold_positions(labels: torch.Tensor, num_folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions trained on (every fold but `fold`) and validated on (fold `fold`), ascending. The folds are stratified
    and seeded (as scikit-learn's StratifiedKFold, without it): each class shuffled, dealt out in turn."""
    if len(labels) < num_folds:
        raise UserError(
            f"data.num_folds={num_folds} folds need at least {num_folds} training images, there are {len(labels)}: choose fewer folds."
        )
    shuffled = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    by_class = shuffled[torch.sort(labels[shuffled], stable=True).indices]  # class by class, shuffled within
    folds = torch.empty(len(labels), dtype=torch.long)
    folds[by_class] = torch.arange(len(labels)) % num_folds
    return torch.nonzero(folds != fold).flatten(), torch.nonzero(folds == fold).flatten()


class EpochShuffleSampler(DistributedSampler):
    """DistributedSampler's order, sharding and padding (so Lightning uses it under DDP as it is), cut into index
    tensors of `batch_size` on `device`: a list of ints per batch would be copied to a GPU from pageable memory,
    waiting for its queued work at every step. Its state is (epoch, batches served): a resumed epoch skips what was
    served, another epoch (a checkpoint after an epoch's last batch) skips nothing."""

    def __init__(self, size: int, seed: int, batch_size: int, num_replicas: int = 1, rank: int = 0, device=None):
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.device = batch_size, device
        self._served = self._resume = {"epoch": -1, "served": 0}

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.from_numpy(np.fromiter(super().__iter__(), dtype=np.int64)).to(self.device)
        start = self._resume["served"] if self._resume["epoch"] == self.epoch else 0
        self._served, self._resume = {"epoch": self.epoch, "served": start}, {"epoch": -1, "served": 0}
        for batch in order[start * self.batch_size :].split(self.batch_size):
            self._served["served"] += 1
            yield batch

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def state_dict(self) -> dict[str, int]:
        return dict(self._resume if self._resume["epoch"] >= 0 else self._served)  # a resume not yet begun: its place

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state)


class ResumableDataLoader(StatefulDataLoader):
    """torchdata's loader, whose place Lightning saves in every checkpoint, over `sampler`'s batches (each item of
    `dataset` is a whole batch, at the positions the sampler gives); `generator` keeps the worker seeds off the
    global generator."""

    def __init__(self, dataset: Dataset, sampler: EpochShuffleSampler, **kwargs):
        with warnings.catch_warnings():  # torchdata 0.11 calls torch's deprecated set_vital
            warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
            super().__init__(dataset, sampler=sampler, batch_size=None, generator=torch.Generator(), **kwargs)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        # lazily: workers would start drawing the epoch's batches before Lightning has set the epoch
        yield from super().__iter__()


class ImageDataModule(LightningDataModule):
    """Serves batches {"image": uint8 (B,C,H,W), "label", "index"}; float conversion, normalisation and augmentation
    run on whole batches on the device. A subclass sets input_shape, num_classes, mean, std, class_names and
    read_splits(stage): the labelled (train, val, test) splits, those `stage` does not serve may be None; val None:
    `val_size` images of train validate."""

    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    predict_split = "test"  # the split trainer.predict runs over

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,  # None: when training on a GPU
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        val_size: int = 5000,
        num_folds: int | None = None,
        fold: int = 0,
        split_seed: int = 0,
        on_device: bool = False,  # on a GPU, hold each split there whole and cut batches there
    ):
        super().__init__()
        check_fold_settings(num_folds, fold)
        self.num_folds, self.fold, self.split_seed, self.val_size = num_folds, fold, split_seed, val_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory, self.on_device, self.augment = num_workers, pin_memory, on_device, augment
        # the training order's seed, drawn from the run's seeded generator: the same `seed` gives the same order
        self.shuffle_seed = int(torch.randint(2**31, ()))
        self.train_set = self.val_set = self.test_set = None
        self._normalizations: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def source(self, split: str, index: int) -> str:
        """Where sample `index` of `split` comes from: a file path when the dataset has files."""
        return f"{split}[{index}]"

    def dataset(self, split: str) -> Dataset:
        """train, val, test or predict_split (the entry points accept no other)."""
        return getattr(self, f"{split}_set")

    def setup(self, stage: str | None = None) -> None:
        """Validates on fold `fold` of train with num_folds set, else the dataset's own val, else `val_size` carved from train."""
        needs = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": (self.predict_split,)}
        if all(self.dataset(split) is not None for split in needs.get(stage, sum(needs.values(), ()))):
            return  # set up by an earlier stage
        train, val, test = self.read_splits(stage)
        if self.num_folds and train is not None:
            train_at, val_at = fold_positions(train.labels, self.num_folds, self.fold, self.split_seed)
            log.info(f"Fold {self.fold} of {self.num_folds}: {len(train_at)} images train, {len(val_at)} validate")
            train, val = FoldSubset(train, train_at), FoldSubset(train, val_at)
        elif val is None and train is not None:
            train, val = self.carve_val_set(train)
        self.train_set, self.val_set, self.test_set = train, val, test

    def carve_val_set(self, train_set: ArrayImageDataset) -> tuple[ArrayImageDataset, ArrayImageDataset]:
        if not 0 < self.val_size < len(train_set):
            raise UserError(
                f"data.val_size must be between 1 and {len(train_set) - 1} (images carved from the training set for validation), got {self.val_size}."
            )
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(self.split_seed))
        parts = (train_set.__getitems__(at) for at in (order[self.val_size :], order[: self.val_size].sort().values))
        return tuple(ArrayImageDataset(part["image"], part.get("label"), part["index"]) for part in parts)  # copies

    def train_dataloader(self) -> DataLoader:
        # DDP: this process's share
        sharding = (self.trainer.distributed_sampler_kwargs if self.trainer else None) or {}
        options, gpu = self._placed(self.train_set)
        # the batches' positions are cut where the images are: on the GPU when they were placed there
        sampler = EpochShuffleSampler(len(self.train_set), self.shuffle_seed, self.batch_size, device=gpu, **sharding)
        return ResumableDataLoader(self.train_set, sampler=sampler, **options)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.eval_batch_size, **self._placed(self.val_set)[0])

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.eval_batch_size, **self._placed(self.test_set)[0])

    def predict_dataloader(self) -> DataLoader:
        dataset = self.dataset(self.predict_split)
        return DataLoader(dataset, batch_size=self.eval_batch_size, **self._placed(dataset)[0])

    def _placed(self, dataset: Dataset) -> tuple[dict, torch.device | None]:
        """The loader options of `dataset`, moved whole to the training GPU once when `on_device` asks for it, and the
        GPU it is on (None: the CPU): batches cut on the GPU have nothing to pin and no workers (CUDA does not fork)."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        gpu = device if self.on_device and device.type == "cuda" and isinstance(dataset, ArrayImageDataset) else None
        if gpu is not None:
            dataset.to(gpu)
        num_workers = 0 if gpu is not None else self.num_workers
        pin_memory = (device.type == "cuda" if self.pin_memory is None else self.pin_memory) and gpu is None
        options = dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)
        return {**options, "collate_fn": already_collated}, gpu

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B,C,H,W) -> float, normalised with the dataset's mean and std: one multiply-add on a copy."""
        if images.device not in self._normalizations:
            mean, std = (torch.tensor(v, device=images.device).view(1, -1, 1, 1) for v in (self.mean, self.std))
            self._normalizations[images.device] = (1.0 / (255.0 * std), -mean / std)
        scale, shift = self._normalizations[images.device]
        return images.to(torch.float32, copy=True).mul_(scale).add_(shift)

    def on_after_batch_transfer(self, batch: dict | torch.Tensor, dataloader_idx: int) -> dict | torch.Tensor:
        if not isinstance(batch, dict):  # the module's example_input_array is a float input already
            return batch
        images = batch["image"]
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            images = self.augment(images)
        return {**batch, "image": self.normalize(images)}
