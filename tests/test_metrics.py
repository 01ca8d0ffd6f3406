"""The classifier's epoch metrics agree with torchmetrics' own over several batches, and reset between epochs."""

import pytest
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.metrics import Mean, TopKAccuracy


@pytest.mark.parametrize("num_classes, top_k", [(10, (1, 5)), (200, (1, 5)), (3, (1, 3)), (10, (5, 2, 1))])
def test_top_k_accuracy_matches_torchmetrics_for_every_k(num_classes, top_k):
    generator = torch.Generator().manual_seed(num_classes + sum(top_k))
    ours = TopKAccuracy({f"top{k}": k for k in top_k})
    references = {f"top{k}": MulticlassAccuracy(num_classes, top_k=k, average="micro") for k in top_k}
    for batch_size in (128, 128, 37):  # a short last batch: the counts are per sample, not per batch
        logits = torch.randn(batch_size, num_classes, generator=generator)
        labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
        ours.update(logits, labels)
        for reference in references.values():
            reference.update(logits, labels)
    computed = ours.compute()
    assert list(computed) == list(references)
    for name, reference in references.items():
        assert 0 < computed[name].item() <= 1
        assert computed[name].item() == pytest.approx(reference.compute().item(), abs=1e-7)


def test_top_k_accuracy_counts_what_it_is_given():
    accuracy = TopKAccuracy({"top1": 1, "top2": 2})
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    accuracy.update(logits, torch.tensor([1, 1, 0]))  # top-1 right, second best, last
    assert accuracy.compute()["top1"].item() == pytest.approx(1 / 3)
    assert accuracy.compute()["top2"].item() == pytest.approx(2 / 3)
    accuracy.reset()
    accuracy.update(logits, torch.tensor([2, 2, 2]))
    assert accuracy.compute()["top1"].item() == pytest.approx(1 / 3)
    assert accuracy.compute()["top2"].item() == pytest.approx(2 / 3)  # rows 0 and 2 have class 2 among their two best


def test_mean_weights_batch_means_by_their_batch_size_like_torchmetrics():
    ours, reference = Mean(), MeanMetric()
    for value, batch_size in ((2.0, 128), (1.0, 128), (4.0, 16)):
        ours.update(torch.tensor(value), weight=batch_size)
        reference.update(torch.tensor(value), weight=batch_size)
    assert ours.compute().item() == pytest.approx(reference.compute().item())
    assert ours.compute().item() == pytest.approx((2 * 128 + 128 + 4 * 16) / 272)


def test_mean_of_per_sample_values_counts_each_sample_once():
    mean = Mean()
    mean.update(torch.tensor([1.0, 2.0, 3.0]))
    mean.update(torch.tensor([6.0]))
    assert mean.compute().item() == pytest.approx(3.0)


def test_a_nan_loss_shows_in_the_mean_instead_of_being_dropped():
    # torchmetrics' MeanMetric drops NaN (with a host sync per update); a diverged epoch must not look healthy
    mean = Mean()
    mean.update(torch.tensor(1.0), weight=8)
    mean.update(torch.tensor(float("nan")), weight=8)
    assert torch.isnan(mean.compute())
