"""The training loader: DistributedSampler's order and sharding, cut into index tensors, resumable mid-epoch from
the state Lightning saves (StatefulDataLoader.state_dict)."""

import pytest
import torch
from torch.utils.data import DistributedSampler

from datamodules.base import ArrayImageDataset, EpochShuffleSampler, ResumableDataLoader


@pytest.mark.parametrize(("size", "replicas", "batch_size"), [(1000, 1, 128), (1001, 3, 10), (5, 4, 2), (7, 3, 1)])
def test_each_process_gets_distributed_samplers_positions_in_batches(size, replicas, batch_size):
    for rank in range(replicas):
        reference = DistributedSampler(range(size), num_replicas=replicas, rank=rank, shuffle=True, seed=7)
        sampler = EpochShuffleSampler(size, seed=7, batch_size=batch_size, num_replicas=replicas, rank=rank)
        reference.set_epoch(3), sampler.set_epoch(3)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(len(batch) == batch_size for batch in batches[:-1]) and 0 < len(batches[-1]) <= batch_size
        assert torch.cat(batches).tolist() == list(reference)


def test_processes_with_smaller_batches_train_on_the_same_global_batches():
    one = EpochShuffleSampler(960, seed=1, batch_size=64)
    shards = [EpochShuffleSampler(960, seed=1, batch_size=16, num_replicas=4, rank=rank) for rank in range(4)]
    for sampler in (one, *shards):
        sampler.set_epoch(2)
    for whole, parts in zip(one, zip(*shards), strict=True):
        assert torch.equal(whole.sort().values, torch.cat(parts).sort().values)


class RecordingDataset(ArrayImageDataset):
    def __getitems__(self, positions):
        self.received.append(positions)
        return super().__getitems__(positions)


def loader_over(size: int, batch_size: int) -> tuple[ResumableDataLoader, RecordingDataset]:
    dataset = RecordingDataset(
        torch.arange(size, dtype=torch.uint8).view(size, 1, 1, 1), torch.arange(size), torch.arange(size)
    )
    dataset.received = []
    return ResumableDataLoader(dataset, EpochShuffleSampler(size, seed=5, batch_size=batch_size)), dataset


def test_the_dataset_gets_each_batch_as_one_index_tensor():
    loader, dataset = loader_over(100, 32)
    batches = list(loader)
    assert [len(batch["label"]) for batch in batches] == [32, 32, 32, 4]
    assert len(dataset.received) == 4  # one call per batch
    assert all(isinstance(positions, torch.Tensor) and positions.dtype == torch.long for positions in dataset.received)
    assert sorted(torch.cat([batch["index"] for batch in batches]).tolist()) == list(range(100))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_resumed_epoch_serves_the_batches_not_yet_served(num_workers):
    def loader() -> ResumableDataLoader:
        dataset = loader_over(100, 16)[1]
        return ResumableDataLoader(
            dataset,
            EpochShuffleSampler(100, seed=5, batch_size=16),
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )

    uninterrupted = loader()
    uninterrupted.sampler.set_epoch(4)
    expected = [batch["index"] for batch in uninterrupted]
    interrupted = loader()
    interrupted.sampler.set_epoch(4)
    served = iter(interrupted)
    for _ in range(3):
        next(served)
    state = interrupted.state_dict()
    # as Lightning resumes: the state is loaded, then the epoch set, then the first batch asked for
    resumed = loader()
    resumed.load_state_dict(state)
    batches = iter(resumed)
    resumed.sampler.set_epoch(4)
    rest = [batch["index"] for batch in batches]
    assert len(rest) == len(expected) - 3 and all(torch.equal(a, b) for a, b in zip(rest, expected[3:]))
    # a checkpoint after an epoch's last batch: the next epoch is served whole
    after_last = loader()
    after_last.load_state_dict(resumed.state_dict())
    batches = iter(after_last)
    after_last.sampler.set_epoch(5)
    assert len(list(batches)) == len(expected)


def test_loader_processes_serve_the_same_batches():
    in_process, _ = loader_over(100, 16)
    dataset = in_process.dataset
    with_workers = ResumableDataLoader(dataset, EpochShuffleSampler(100, seed=5, batch_size=16), num_workers=2)
    for loader in (in_process, with_workers):
        loader.sampler.set_epoch(1)
    for ours, theirs in zip(in_process, with_workers, strict=True):
        assert torch.equal(ours["index"], theirs["index"]) and torch.equal(ours["image"], theirs["image"])


def test_the_batches_are_cut_on_the_given_device():
    # data.on_device: the images live on the GPU, and so do the batches' positions (one copy an epoch, none a step);
    # "meta" stands in for a GPU here, a device other than the CPU that needs none
    sampler = EpochShuffleSampler(100, seed=0, batch_size=32, device=torch.device("meta"))
    assert [(batch.device.type, len(batch)) for batch in sampler] == [("meta", 32)] * 3 + [("meta", 4)]
