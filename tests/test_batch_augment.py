"""Batch augmentation: each image's crop and flip is one torchvision would make, drawn per image, training only."""

from types import SimpleNamespace

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from datamodules.batch_augment import BatchAugment
from datamodules.fake import FakeDataModule


def images(batch: int = 16, size: int = 12) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def torchvision_crops(image: torch.Tensor, padding: int, padding_mode: str) -> list[torch.Tensor]:
    """Every output torchvision's RandomCrop(padding, padding_mode) + RandomHorizontalFlip can give for `image`."""
    size = image.shape[-1]
    padded = TF.pad(image, [padding], padding_mode=padding_mode)
    crops = [
        TF.crop(padded, top, left, size, size) for top in range(2 * padding + 1) for left in range(2 * padding + 1)
    ]
    return crops + [TF.horizontal_flip(crop) for crop in crops]


@pytest.mark.parametrize("padding_mode", ["constant", "edge", "reflect", "symmetric"])
def test_random_crop_is_a_torchvision_crop_of_each_image(padding_mode):
    batch = images()
    out = BatchAugment(crop="random", padding=3, padding_mode=padding_mode)(batch)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    for image, augmented in zip(batch, out):
        assert any(torch.equal(augmented, crop) for crop in torchvision_crops(image, 3, padding_mode))


def test_parameters_are_drawn_per_image():
    batch = images(64)[:1].expand(64, -1, -1, -1).contiguous()  # one image 64 times
    out = BatchAugment(crop="random", padding=4)(batch)
    distinct = {tuple(image.flatten().tolist()) for image in out}
    assert len(distinct) > 20
    flipped_only = BatchAugment(crop="none", flip=True)(batch)
    mirrored = torch.tensor([torch.equal(image, TF.horizontal_flip(batch[0])) for image in flipped_only])
    kept = torch.tensor([torch.equal(image, batch[0]) for image in flipped_only])
    assert (mirrored | kept).all() and 10 < mirrored.sum() < 54


def test_no_crop_no_flip_changes_nothing():
    batch = images()
    assert torch.equal(BatchAugment(crop="none", flip=False)(batch), batch)


def test_resized_box_matches_torchvision_resized_crop():
    batch = images(4, size=16).float()
    top, left, box_height, box_width = (
        torch.tensor([0.0, 3, 5, 2]),
        torch.tensor([0.0, 1, 7, 4]),
        torch.tensor([16.0, 8, 11, 5]),
        torch.tensor([16.0, 12, 6, 9]),
    )
    flipped = torch.tensor([False, False, True, False])
    out = BatchAugment._resize_boxes(batch, flipped, box_height, box_width, top, left)
    for i in range(4):
        expected = TF.resized_crop(
            batch[i], int(top[i]), int(left[i]), int(box_height[i]), int(box_width[i]), [16, 16], antialias=False
        )
        expected = TF.horizontal_flip(expected) if flipped[i] else expected
        torch.testing.assert_close(out[i], expected, atol=1e-3, rtol=0)


def test_random_resized_boxes_lie_inside_with_the_asked_area_and_ratio():
    augment = BatchAugment(crop="random_resized", scale=(0.25, 0.5), ratio=(0.5, 2.0))
    box_height, box_width, top, left = augment._random_boxes(1000, 64, 48, torch.device("cpu"))
    assert (top >= 0).all() and (left >= 0).all() and (top + box_height <= 64).all() and (left + box_width <= 48).all()
    area = box_height * box_width / (64 * 48)
    assert area.min() > 0.23 and area.max() < 0.53  # rounding to whole pixels moves the area a little
    assert (box_width / box_height).min() > 0.45 and (box_width / box_height).max() < 2.2
    out = augment(images(8, size=48))
    assert out.shape == (8, 3, 48, 48) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 255


def test_datamodule_augments_training_batches_only():
    datamodule = FakeDataModule(
        input_shape=(3, 8, 8), num_classes=2, train_size=4, augment=BatchAugment(crop="none", flip=True)
    )
    batch = {"image": images(256, size=8), "label": torch.zeros(256, dtype=torch.long)}
    plain = datamodule.normalize(batch["image"])
    for training in (False, True):
        datamodule.trainer = SimpleNamespace(training=training)
        out = datamodule.on_after_batch_transfer(batch, 0)["image"]
        assert torch.equal(out, plain) != training
