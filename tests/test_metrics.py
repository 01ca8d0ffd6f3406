"""The classifier's epoch loss is the mean over samples, and a NaN loss stays visible in it."""

import pytest
import torch

from tests.test_classifier import classifier


def test_epoch_loss_weights_each_batch_by_its_size():
    module = classifier()
    for value, batch_size in ((2.0, 128), (1.0, 128), (4.0, 16)):
        module.train_metrics["loss"].update(
            torch.tensor(value).expand(batch_size)
        )  # as training_step passes a batch's mean
    assert module.train_metrics["loss"].compute().item() == pytest.approx((2 * 128 + 128 + 4 * 16) / 272)


def test_a_nan_loss_shows_in_the_epoch_mean_instead_of_being_dropped():
    # torchmetrics' default drops NaN (with a host sync per update); a diverged epoch must not look healthy
    module = classifier()
    module.val_metrics["loss"].update(torch.tensor([1.0, 2.0]))
    module.val_metrics["loss"].update(torch.tensor([float("nan")]))
    assert torch.isnan(module.val_metrics["loss"].compute())
