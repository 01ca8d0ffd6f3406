"""K-fold cross-validation: the folds partition the training set, stratified and seeded; the datamodules use them."""

import pytest
import torch

from benchmarks.tiny_imagenet_files import write_tiny_imagenet
from datamodules.base import check_fold_settings, fold_positions
from datamodules.fake import FakeDataModule
from datamodules.mnist import MNISTDataModule
from datamodules.tiny_imagenet import TinyImageNetDataModule
from tests.helpers.commands import TINY, run_entry
from user_errors import UserError

# unbalanced on purpose: class 0 has 5x the samples of class 2
LABELS = torch.tensor([0] * 250 + [1] * 103 + [2] * 50 + [3] * 7)


def test_folds_are_disjoint_cover_the_training_set_and_are_stratified():
    num_folds = 5
    validated = [fold_positions(LABELS, num_folds, fold, seed=3)[1] for fold in range(num_folds)]
    everything = torch.cat(validated)
    assert len(everything) == len(LABELS) and torch.equal(
        everything.sort().values, torch.arange(len(LABELS))
    )  # disjoint, covering
    sizes = [len(fold) for fold in validated]
    assert max(sizes) - min(sizes) <= 1
    for label in range(4):
        per_fold = [int((LABELS[fold] == label).sum()) for fold in validated]
        expected = int((LABELS == label).sum()) / num_folds
        assert all(abs(count - expected) < 1 for count in per_fold), (label, per_fold)
    train, val = fold_positions(LABELS, num_folds, 2, seed=3)
    assert not set(train.tolist()) & set(val.tolist()) and len(train) + len(val) == len(LABELS)


def test_folds_are_fixed_by_the_seed_and_shuffled():
    first = fold_positions(LABELS, 4, 0, seed=0)[1]
    assert torch.equal(first, fold_positions(LABELS, 4, 0, seed=0)[1])
    assert not torch.equal(first, fold_positions(LABELS, 4, 0, seed=1)[1])
    assert not torch.equal(first[first < 250], torch.arange(0, 250, 4))  # class 0 not dealt out in file order


@pytest.mark.parametrize(
    ("num_folds", "fold", "message"),
    [
        (None, 2, "data.fold=2 is not a fold of data.num_folds=null: "),
        (1, 0, "data.fold=0 is not a fold of data.num_folds=1: data.num_folds is at least 2"),
        (5, 5, "data.fold=5 is not a fold of data.num_folds=5: "),
        (3, -1, "data.fold=-1 is not a fold of data.num_folds=3: "),
    ],
)
def test_bad_fold_settings_are_one_sentence(num_folds, fold, message):
    with pytest.raises(UserError, match=message):
        check_fold_settings(num_folds, fold)


def test_mnist_validates_on_a_fold_of_the_training_images_and_keeps_the_test_set(mnist_dir):
    def setup(**folds) -> MNISTDataModule:
        datamodule = MNISTDataModule(str(mnist_dir), val_size=100, download=False, **folds)
        datamodule.setup("fit")
        return datamodule

    plain = setup()
    folds = [setup(num_folds=3, fold=fold) for fold in range(3)]
    validated = torch.cat([datamodule.val_set.source_index for datamodule in folds])
    assert torch.equal(validated.sort().values, torch.arange(600))  # the 600 training images, each validated once
    for datamodule in folds:
        train_index = set(datamodule.train_set.source_index.tolist())
        assert len(train_index) == 400 and not train_index & set(datamodule.val_set.source_index.tolist())
        batch = datamodule.val_set.__getitems__([0, 5])
        assert torch.equal(batch["index"], datamodule.val_set.source_index[[0, 5]])
        assert torch.equal(batch["label"], datamodule.val_set.labels[[0, 5]])
        assert torch.equal(datamodule.test_set.images, plain.test_set.images)
    assert torch.bincount(folds[0].val_set.labels, minlength=10).tolist() == [20] * 10  # 60 per class in the tiny MNIST


def test_fake_data_folds_its_training_images():
    datamodule = FakeDataModule(
        input_shape=(1, 8, 8), num_classes=3, train_size=30, val_size=5, test_size=5, num_folds=3, fold=1
    )
    datamodule.setup("fit")
    assert len(datamodule.train_set) == 20 and len(datamodule.val_set) == 10 and len(datamodule.test_set) == 5


def test_train_refuses_a_fold_outside_the_folds_in_one_sentence(mnist_dir, tmp_path):
    result = run_entry(
        "train.py",
        *TINY,
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}",
        "data.num_folds=3",
        "data.fold=3",
        check=False,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: data.fold=3 is not a fold of data.num_folds=3: data.num_folds is at least 2 (train on K-1 folds, "
        "validate on one) and data.fold counts them from 0 (e.g. data.num_folds=5 data.fold=4); data.num_folds=null "
        "with data.fold=0 keeps the single seeded validation split."
    )


@pytest.mark.parametrize("cache", [True, False])
def test_tiny_imagenet_validates_on_a_fold_of_train_and_tests_on_the_official_val(cache, tmp_path):
    write_tiny_imagenet(tmp_path, num_classes=3, train_per_class=6, val_per_class=2, test_count=2)
    datamodule = TinyImageNetDataModule(str(tmp_path), download=False, cache=cache, num_folds=3, fold=1, batch_size=4)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.train_set) == 12 and len(datamodule.val_set) == 6
    assert torch.bincount(datamodule.val_set.labels).tolist() == [2, 2, 2]
    assert all("/train/" in datamodule.source("val", int(index)) for index in datamodule.val_set.source_index)
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["image"].shape == (4, 3, 64, 64) and torch.equal(batch["label"], datamodule.val_set.labels[:4])
    datamodule.setup("test")
    assert len(datamodule.test_set) == 6 and all(
        "/val/images/" in datamodule.source("test", index) for index in range(6)
    )
