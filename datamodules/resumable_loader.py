"""A shuffling training loader whose order is reproducible after a resume, also from the middle of an epoch.

Each epoch's order is a function of (seed, epoch) alone, as DistributedSampler does under DDP, and the
loader draws nothing from the global random generator (DataLoader otherwise draws its worker seed and the
sampler's seed from it). callbacks/resume.py stores `position()` in every checkpoint and calls
`resume_from()` on resume: a run resumed in the middle of an epoch continues with the batches of that
epoch's order it had not yet trained on.

Batches are cut from the epoch's order as index tensors (DataLoader's "automatic batching" off, the
dataset's `__getitems__` called with them): a BatchSampler would build a list of Python ints per batch, which
the dataset turns back into a tensor and, with the images on a GPU, copies
there from pageable memory, which waits for the GPU's queued work at every step.
"""

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class EpochShuffleSampler(DistributedSampler):
    """A fresh random order every epoch, a function of (seed, epoch) alone, served as index tensors of
    `batch_size` positions (the last one shorter) on `device`; `set_epoch` (called by Lightning) picks the
    epoch, `start_batch` skips this process's first batches of it.

    Under DDP each of the `num_replicas` processes takes every num_replicas-th sample of that one order
    (DistributedSampler's sharding and padding), so N processes with batches of B/N train on the same global
    batches as one process with batches of B. Being a DistributedSampler, Lightning uses it as it is; it would
    otherwise wrap it in a DistributedSampler of its own that shuffles the order once more, with another seed.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        device: torch.device | None = None,
    ):
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.batch_size = batch_size
        self.device = device
        self.start_batch = 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        start, self.start_batch = self.start_batch, 0
        # DistributedSampler's order, sharding and padding, made a tensor once an epoch (np.fromiter: no list of
        # Python ints in between) and moved to `device`
        order = torch.from_numpy(np.fromiter(super().__iter__(), dtype=np.int64))
        positions = order[start * self.batch_size :].to(self.device)
        return iter(positions.split(self.batch_size))

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)


class Batches(Dataset):
    """`dataset` indexed a batch at a time: item `positions` is `dataset.__getitems__(positions)`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, positions: torch.Tensor) -> Any:
        return self.dataset.__getitems__(positions)


class ResumableDataLoader(DataLoader):
    """DataLoader over the batches of `dataset` that an EpochShuffleSampler cuts; it counts the batches it served
    in the current epoch and can resume after them.

    `generator` (worker seeds) is re-seeded from the sampler's seed and epoch at each pass, so worker-side
    randomness is reproducible too.
    """

    def __init__(self, dataset: Dataset, sampler: EpochShuffleSampler, **kwargs: Any):
        super().__init__(Batches(dataset), sampler=sampler, batch_size=None, **kwargs)
        self._served = {"epoch": 0, "batches": 0}
        self._resume_at: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing (sampler order, worker seeds) is drawn before the first batch is asked for,
        # which Lightning does after it has called set_epoch for the epoch.
        epoch, skipped = self.sampler.epoch, 0
        if self._resume_at is not None and self._resume_at["epoch"] == epoch:
            skipped = self.sampler.start_batch = self._resume_at["batches"]
        self._resume_at = None
        if self.generator is not None:
            self.generator.manual_seed(self.sampler.seed + epoch)
        self._served = {"epoch": epoch, "batches": skipped}
        for batch in super().__iter__():
            self._served["batches"] += 1
            yield batch

    def position(self) -> dict[str, int]:
        """The epoch and how many of its batches were served."""
        return dict(self._served)

    def resume_from(self, position: dict[str, int]) -> None:
        """Skip the batches already trained on if the next pass is the same epoch (a checkpoint saved mid-epoch)."""
        self._resume_at = dict(position)
