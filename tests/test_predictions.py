"""Per-sample prediction files: their rows against the network's own logits, and what train.py, eval.py and compare.py write."""

import pytest
import torch
from lightning import Trainer
from torch.nn import functional as F

from analysis.prediction_files import read_predictions
from callbacks.predictions import PerSamplePredictions
from runs.build import build_datamodule, build_module
from tests.helpers.commands import TINY, run_entry
from tests.helpers.compose import compose_config
from tests.helpers.csv_rows import read_rows
from tests.helpers.tensorboard_events import image_tags

PREDICTION_COLUMNS = ["pred1", "pred1_name", "prob1"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, mnist_dir):
    """An untrained LeNet evaluated on the val split (and predicting the test split) in-process, with its logits computed directly."""
    out = tmp_path_factory.mktemp("in_process")
    cfg = compose_config(
        [f"data.data_dir={mnist_dir}", "data.val_size=100", "data.download=false", "data.eval_batch_size=32"], out
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    writer = PerSamplePredictions(dirpath=str(out / "predictions"))
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[writer],
    )
    trainer.validate(module, datamodule=datamodule)
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    val_set = datamodule.val_set
    with torch.no_grad():
        logits = module.eval()(datamodule.normalize(val_set.images))
    return out, datamodule, val_set, logits


def test_one_row_per_validation_sample_with_top5_and_loss_from_the_logits(evaluated):
    out, datamodule, val_set, logits = evaluated
    predictions = read_predictions(out / "predictions" / "val.csv")
    assert predictions.split == "val" and predictions.meta["num_samples"] == 100
    assert [int(row["index"]) for row in predictions.rows] == sorted(val_set.source_index.tolist())
    position = {index: position for position, index in enumerate(val_set.source_index.tolist())}
    probabilities = logits.softmax(dim=1)
    losses = F.cross_entropy(logits, val_set.labels, reduction="none")
    for row in predictions.rows:
        sample = position[int(row["index"])]
        expected_probs, expected_ids = probabilities[sample].topk(5)
        assert [int(row[f"pred{rank}"]) for rank in range(1, 6)] == expected_ids.tolist()
        assert [float(row[f"prob{rank}"]) for rank in range(1, 6)] == pytest.approx(
            expected_probs.tolist(), rel=1e-5, abs=1e-9
        )
        assert float(row["loss"]) == pytest.approx(losses[sample].item(), rel=1e-5)
        label = int(val_set.labels[sample])
        assert int(row["label"]) == label and row["label_name"] == datamodule.class_names[label]
        assert row["pred1_name"] == datamodule.class_names[int(row["pred1"])]
        assert row["correct"] == str(int(expected_ids[0].item() == label))
        assert row["source"] == datamodule.source("val", int(row["index"]))
        assert row["epoch"] == "" and row["checkpoint"] == ""  # untrained weights, from no checkpoint


def test_predict_writes_the_predict_split_without_losses(evaluated):
    out, datamodule, _, _ = evaluated
    predictions = read_predictions(out / "predictions" / "predict-test.csv")
    assert predictions.meta["stage"] == "predict" and predictions.split == "test"
    assert [int(row["index"]) for row in predictions.rows] == list(range(len(datamodule.test_set)))
    assert all(row["loss"] == "" and row["label"] != "" for row in predictions.rows)


@pytest.fixture(scope="module")
def run_dir(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_run")
    run_entry("train.py", *TINY, f"data.data_dir={mnist_dir}", f"hydra.run.dir={out}")
    return out


@pytest.fixture
def data_dir(mnist_dir) -> str:
    """Where the user keeps the data: given again to eval and compare, since a checkpoint never says where data lives."""
    return f"data.data_dir={mnist_dir}"


def test_training_writes_each_validation_epoch_and_the_test_of_the_best_checkpoint(run_dir):
    names = sorted(path.name for path in (run_dir / "predictions").glob("*.csv"))
    best = next((run_dir / "checkpoints").glob("best-epoch*.ckpt"))
    best_epoch = int(best.name[len("best-epoch") :][:3])
    assert names == sorted(["val-epoch000.csv", "val-epoch001.csv", f"test-epoch{best_epoch:03d}.csv"])
    test = read_predictions(run_dir / "predictions" / f"test-epoch{best_epoch:03d}.csv")
    assert len(test.rows) == 200 and {row["checkpoint"] for row in test.rows} == {str(best)}
    assert {row["epoch"] for row in read_rows(run_dir / "predictions" / "val-epoch001.csv")} == {"1"}
    # the default checkpoints hold two points of training: epoch000.ckpt and epoch001.ckpt, besides best and last
    assert {"epoch000.ckpt", "epoch001.ckpt", "last.ckpt", best.name} <= {
        path.name for path in (run_dir / "checkpoints").iterdir()
    }


def test_validation_figures_reach_tensorboard_each_epoch(run_dir):
    images = image_tags(run_dir / "tensorboard")
    assert images["val/confusion_matrix"] == 2
    assert images.get("val/misclassified", 0) >= 1  # an epoch without errors has no grid


def test_eval_writes_the_predictions_of_its_checkpoint(run_dir, data_dir, tmp_path):
    checkpoint = run_dir / "checkpoints" / "epoch000.ckpt"
    run_entry(
        "eval.py",
        f"ckpt_path={checkpoint}",
        data_dir,
        f"hydra.run.dir={tmp_path}",
        "callbacks.progress_bar.refresh_rate=0",
    )
    evaluated = read_rows(tmp_path / "predictions" / "val-epoch000.csv")
    assert {row["checkpoint"] for row in evaluated} == {str(checkpoint)} and {row["epoch"] for row in evaluated} == {
        "0"
    }
    during_training = read_rows(run_dir / "predictions" / "val-epoch000.csv")
    # the same weights on the same samples: the same predictions as the validation of epoch 0
    assert [(row["index"], *(row[name] for name in PREDICTION_COLUMNS)) for row in evaluated] == [
        (row["index"], *(row[name] for name in PREDICTION_COLUMNS)) for row in during_training
    ]
    assert len(read_rows(tmp_path / "predictions" / "test-epoch000.csv")) == 200


def test_compare_evaluates_two_checkpoints_and_finds_their_disagreements(run_dir, data_dir, tmp_path):
    result = run_entry(
        "compare.py",
        str(run_dir / "checkpoints" / "epoch000.ckpt"),
        str(run_dir / "checkpoints" / "epoch001.ckpt"),
        data_dir,
        f"hydra.run.dir={tmp_path}",
        "callbacks.progress_bar.refresh_rate=0",
    )
    first, second = (read_rows(run_dir / "predictions" / f"val-epoch00{epoch}.csv") for epoch in (0, 1))
    differing = [a["index"] for a, b in zip(first, second) if a["pred1"] != b["pred1"]]
    assert differing, "the two epochs should judge some samples differently"
    assert [row["index"] for row in read_rows(tmp_path / "disagreements.csv")] == differing
    assert f"{len(differing)} judged differently" in result.stdout
    assert (tmp_path / "a" / "predictions" / "val-epoch000.csv").is_file() and (
        tmp_path / "b" / "predictions" / "val-epoch001.csv"
    ).is_file()
    assert (tmp_path / "contact_sheet.png").stat().st_size > 0
    assert image_tags(tmp_path / "tensorboard") == {"compare/contact_sheet": 1}


def test_a_run_that_fails_keeps_the_files_and_figures_of_the_epochs_before(mnist_dir, tmp_path):
    # epoch 0's figures are still being drawn by the background writer when epoch 1 starts and fails:
    # they reach TensorBoard because the callbacks wait for the writer on the way out
    result = run_entry(
        "train.py",
        *TINY,
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}",
        "+callbacks.fail._target_=tests.helpers.failing_callback.FailAtEpoch",
        "+callbacks.fail.epoch=1",
        check=False,
    )
    assert result.returncode == 2 and "Stopped on purpose at the start of epoch 1." in result.stderr
    assert len(read_predictions(tmp_path / "predictions" / "val-epoch000.csv").rows) == 100
    assert image_tags(tmp_path / "tensorboard")["val/confusion_matrix"] == 1
