"""The data layer's one template: a dataset says how to read its splits, the base chooses what validates;
MNIST's datamodule serves FashionMNIST and KMNIST too, through the real entry point on generated IDX files."""

import csv

import pytest
import torch
from torchvision.datasets import KMNIST, FashionMNIST

from datamodules.base import ArrayImageDataset, ImageDataModule
from datamodules.fake import FakeDataModule
from datamodules.mnist import MNISTDataModule
from runs.build import build_datamodule
from tests.helpers.commands import TINY, run_entry
from tests.helpers.compose import compose_config
from tests.helpers.idx_files import write_idx_dataset
from tests.helpers.tensorboard_events import hparams
from user_errors import UserError

# Recorded with the code before the template (each datamodule carving and folding in its own setup): the same
# seed must keep validating on the same images, so that earlier results stay comparable.
CARVED_SEED_3 = {"val": [15, 17, 32, 34, 38, 43, 57, 65], "train": [293, 255, 148, 568, 393, 196, 257, 491]}
FOLD_2_OF_5_SEED_1 = {"val": [0, 4, 14, 16, 17, 22, 38, 40], "train": [1, 2, 3, 5, 6, 7, 8, 9]}
MNIST_60K_DEFAULT = {"val_first": [1, 3, 47, 49, 80, 83], "val_last": [59969, 59976, 59981]}
FAKE_FOLD_1_OF_5_SEED_2 = [0, 6, 19, 23, 26, 32, 33, 34]


class ListedDataModule(ImageDataModule):
    """A dataset as small as one can be: it only reads its splits (no validation split of its own)."""

    input_shape, num_classes, mean, std = (1, 2, 2), 2, (0.5,), (0.25,)

    def read_splits(self, stage):
        train = ArrayImageDataset(torch.zeros(20, 1, 2, 2, dtype=torch.uint8), torch.arange(20) % 2, torch.arange(20))
        test = ArrayImageDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4) % 2, torch.arange(4))
        return train, None, test


def test_a_dataset_that_only_reads_its_splits_gets_a_carved_validation_set_or_folds():
    carved = ListedDataModule(val_size=5)
    carved.setup("fit")
    assert len(carved.train_set) == 15 and len(carved.val_set) == 5 and len(carved.test_set) == 4
    assert not set(carved.train_set.source_index.tolist()) & set(carved.val_set.source_index.tolist())
    folded = ListedDataModule(num_folds=4, fold=1)
    folded.setup("fit")
    assert len(folded.train_set) == 15 and len(folded.val_set) == 5
    with pytest.raises(UserError, match="data.val_size must be between 1 and 19"):
        ListedDataModule(val_size=20).setup("fit")


def test_a_later_stage_reuses_the_splits_set_up_before(mnist_dir):
    datamodule = MNISTDataModule(str(mnist_dir), val_size=100, download=False)
    datamodule.setup("fit")
    splits = datamodule.train_set, datamodule.val_set, datamodule.test_set
    datamodule.setup("test"), datamodule.setup("validate")
    assert all(a is b for a, b in zip(splits, (datamodule.train_set, datamodule.val_set, datamodule.test_set)))


def test_carved_validation_split_and_folds_are_those_of_before_the_template(mnist_dir):
    carved = MNISTDataModule(str(mnist_dir), val_size=100, split_seed=3, download=False)
    carved.setup("fit")
    assert carved.val_set.source_index[:8].tolist() == CARVED_SEED_3["val"]
    assert carved.train_set.source_index[:8].tolist() == CARVED_SEED_3["train"]
    folded = MNISTDataModule(str(mnist_dir), num_folds=5, fold=2, split_seed=1, download=False)
    folded.setup("fit")
    assert folded.val_set.source_index[:8].tolist() == FOLD_2_OF_5_SEED_1["val"]
    assert folded.train_set.source_index[:8].tolist() == FOLD_2_OF_5_SEED_1["train"]
    fake = FakeDataModule(train_size=50, val_size=10, test_size=10, num_folds=5, fold=1, split_seed=2)
    fake.setup("fit")
    assert fake.val_set.source_index[:8].tolist() == FAKE_FOLD_1_OF_5_SEED_2


def test_the_default_mnist_split_of_the_60k_is_that_of_before_the_template():
    """The main job's split (val_size=5000, split_seed=0): the carving depends on the number of images only."""
    datamodule = ListedDataModule()
    images = torch.zeros(60_000, 1, 1, 1, dtype=torch.uint8)
    train, val = datamodule.carve_val_set(ArrayImageDataset(images, torch.zeros(60_000), torch.arange(60_000)))
    assert len(val) == 5000 and len(train) == 55_000
    assert val.source_index[:6].tolist() == MNIST_60K_DEFAULT["val_first"]
    assert val.source_index[-3:].tolist() == MNIST_60K_DEFAULT["val_last"]


def test_carved_images_and_labels_are_those_at_their_source_index(mnist_dir):
    datamodule = MNISTDataModule(str(mnist_dir), val_size=100, download=False)
    datamodule.setup("fit")
    whole = MNISTDataModule(str(mnist_dir), num_folds=2, download=False).read_splits("fit")[0]
    for split in (datamodule.train_set, datamodule.val_set):
        assert torch.equal(split.images, whole.images[split.source_index])
        assert torch.equal(split.labels, whole.labels[split.source_index])


@pytest.mark.parametrize(
    ("data", "torchvision_class", "mean", "std"),
    [
        ("mnist", "MNIST", 0.1307, 0.3081),
        ("fashion_mnist", "FashionMNIST", 0.2860, 0.3530),
        ("kmnist", "KMNIST", 0.1918, 0.3483),
    ],
)
def test_each_mnist_config_names_its_class_statistics_and_folder(data, torchvision_class, mean, std, tmp_path):
    datamodule = build_datamodule(compose_config([f"data={data}", f"data.data_dir={tmp_path}"], tmp_path))
    assert datamodule.mean == (mean,) and datamodule.std == (std,)
    assert datamodule.raw_folder == tmp_path / torchvision_class / "raw"


def test_a_class_outside_the_three_is_refused_in_one_sentence(tmp_path):
    cfg = compose_config(["data=fashion_mnist", "data.torchvision_dataset=os.system"], tmp_path)
    with pytest.raises(
        UserError, match=r"^data.torchvision_dataset must be one of MNIST, FashionMNIST, KMNIST, got 'os.system'\.$"
    ):
        build_datamodule(cfg)


@pytest.mark.parametrize(
    ("data", "torchvision_class"),
    [("fashion_mnist", FashionMNIST), pytest.param("kmnist", KMNIST, marks=pytest.mark.slow)],
)
def test_train_runs_on_the_official_layout_with_the_datasets_class_names(data, torchvision_class, tmp_path):
    data_dir = write_idx_dataset(tmp_path / "data", torchvision_class.__name__)
    run = tmp_path / "run"
    run_entry(
        "train.py",
        *TINY,
        f"data={data}",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run}",
        "trainer.max_epochs=1",
    )
    (predictions,) = (run / "predictions").glob("test-*.csv")
    with open(predictions, newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 200  # the generated test file's images
    assert {row["label_name"] for row in rows} == set(torchvision_class.classes)
    assert all(row["source"].startswith(str(data_dir / torchvision_class.__name__ / "raw")) for row in rows[:3])
    assert not (data_dir / "MNIST").exists()  # the shipped MNIST copy is for MNIST only
    values, _ = hparams(run / "tensorboard")
    assert values["data/torchvision_dataset"] == torchvision_class.__name__  # the hparams tab tells the three apart


def test_a_missing_fashion_mnist_is_one_sentence_naming_it(tmp_path):
    result = run_entry(
        "train.py",
        *TINY,
        "data=fashion_mnist",
        f"paths.data_dir={tmp_path / 'empty'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(
        f"error: The FashionMNIST training files in {tmp_path / 'empty' / 'FashionMNIST' / 'raw'} are missing or not the official IDX files"
    )
    assert "holds FashionMNIST/raw/" in line and line.endswith(".") and "Traceback" not in result.stderr


def test_an_mnist_checkpoint_is_not_continued_on_fashion_mnist(mnist_dir, tmp_path):
    """Same datamodule class and shapes, another dataset: continuing would train MNIST's weights on clothes."""
    run = tmp_path / "mnist"
    run_entry("train.py", *TINY, f"paths.data_dir={mnist_dir}", f"hydra.run.dir={run}", "trainer.max_epochs=1")
    fashion = write_idx_dataset(tmp_path / "data", "FashionMNIST")
    result = run_entry(
        "train.py",
        *TINY,
        "data=fashion_mnist",
        f"paths.data_dir={fashion}",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'continued'}",
        check=False,
    )
    assert result.returncode == 2
    assert "was trained with data=mnist, this run has data=fashion_mnist" in result.stderr
    assert not (tmp_path / "continued" / "checkpoints").exists()  # refused before anything was trained
