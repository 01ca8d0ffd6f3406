"""The classifier's epoch loss agrees with torchmetrics' weighted mean and keeps a NaN visible."""

import pytest
import torch
from torchmetrics import MeanMetric

from lightning_modules.classifier import Mean


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
