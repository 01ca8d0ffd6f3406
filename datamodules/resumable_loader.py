"""A shuffling training loader whose order is reproducible after a resume, also from the middle of an epoch.

Each epoch's order is a function of (seed, epoch) alone, as DistributedSampler does under DDP, and the
loader draws nothing from the global random generator (DataLoader otherwise draws its worker seed and the
sampler's seed from it). callbacks/exact_resume.py stores `position()` in every checkpoint and calls
`resume_from()` on resume: a run resumed in the middle of an epoch continues with the batches of that
epoch's order it had not yet trained on.
"""

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler


class EpochShuffleSampler(DistributedSampler):
    """A fresh random order every epoch, a function of (seed, epoch) alone; `set_epoch` (called by Lightning) picks the
    epoch, `start` skips this process's first samples of it.

    Under DDP each of the `num_replicas` processes takes every num_replicas-th sample of that one order
    (DistributedSampler's sharding), so N processes with batches of B/N train on the same global batches as one
    process with batches of B. Being a DistributedSampler, Lightning uses it as it is; it would otherwise wrap it
    in a DistributedSampler of its own that shuffles the order once more, with another seed.
    """

    def __init__(self, size: int, seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return itertools.islice(super().__iter__(), start, None)


class ResumableDataLoader(DataLoader):
    """DataLoader that counts the batches it served in the current epoch and can resume after them.

    `generator` (worker seeds) is re-seeded from the sampler's seed and epoch at each pass, so worker-side
    randomness is reproducible too.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._served = {"epoch": 0, "batches": 0}
        self._resume_at: dict[str, int] | None = None

    def _epoch(self) -> int:
        return getattr(self.sampler, "epoch", 0)

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing (sampler order, worker seeds) is drawn before the first batch is asked for,
        # which Lightning does after it has called set_epoch for the epoch.
        epoch, skipped = self._epoch(), 0
        if self._resume_at is not None and self._resume_at["epoch"] == epoch and isinstance(self.sampler, EpochShuffleSampler):
            skipped = self._resume_at["batches"]
            self.sampler.start = skipped * self.batch_size
        self._resume_at = None
        if self.generator is not None:
            self.generator.manual_seed(getattr(self.sampler, "seed", 0) + epoch)
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
