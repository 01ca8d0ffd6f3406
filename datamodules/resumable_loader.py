"""The training loader: torchdata's StatefulDataLoader, whose place Lightning saves in every checkpoint, over
index-tensor batches of DistributedSampler's (seed, epoch) order; nothing is drawn from the global generators."""

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader


class EpochShuffleSampler(DistributedSampler):
    """DistributedSampler's order, sharding and padding, cut into index tensors of `batch_size` on `device`: a list of
    ints per batch would be copied to a GPU from pageable memory, waiting for its queued work at every step.
    Being a DistributedSampler, Lightning uses it under DDP as it is. Its state is (epoch, batches served): a resumed
    epoch skips what was served, another epoch (a checkpoint after an epoch's last batch) skips nothing."""

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


class Batches(Dataset):
    """`dataset` indexed a batch at a time: item `positions` is `dataset.__getitems__(positions)`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, positions: torch.Tensor) -> Any:
        return self.dataset.__getitems__(positions)


class ResumableDataLoader(StatefulDataLoader):
    """Batches of `dataset` as `sampler` cuts them; `generator` keeps the worker seeds off the global generator."""

    def __init__(self, dataset: Dataset, sampler: EpochShuffleSampler, **kwargs: Any):
        with warnings.catch_warnings():  # torchdata 0.11 calls torch's deprecated set_vital
            warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
            super().__init__(Batches(dataset), sampler=sampler, batch_size=None, generator=torch.Generator(), **kwargs)

    def __iter__(self) -> Iterator[Any]:
        # lazily: workers would start drawing the epoch's batches before Lightning has set the epoch
        yield from super().__iter__()
