"""The real train.py and eval.py, end to end on a tiny MNIST in the official format."""

import json
import math

import pytest
import torch
import yaml

from tests.helpers.commands import TINY, run_entry
from tests.helpers.tensorboard_events import has_graph, hparams, read_scalars

EPOCH_SCALARS = {f"{stage}/{name}" for stage in ("train", "val") for name in ("loss", "top1", "top5")}


@pytest.fixture(scope="module")
def run_dir(mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_run")
    run_entry(
        "train.py",
        *TINY,
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={out}",
        "callbacks.periodic_checkpoint.every_n_epochs=1",
    )
    return out


def test_run_writes_checkpoints(run_dir):
    names = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in names
    assert {"epoch000.ckpt", "epoch001.ckpt"} <= set(names)
    assert sum(name.startswith("best-epoch") for name in names) == 1


def test_run_keeps_its_composed_config(run_dir, mnist_dir):
    stored = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert stored["data"]["data_dir"] == str(mnist_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["run_config"]["model"]["_target_"] == "lightning_modules.nets.lenet.LeNet5"
    assert checkpoint["run_config"]["paths"]["output_dir"] == str(run_dir)


def test_tensorboard_has_curves_hparams_and_graph(run_dir):
    scalars = read_scalars(run_dir / "tensorboard")
    assert EPOCH_SCALARS | {"test/top1", "test/top5", "test/loss", "train/lr", "train_step/loss"} <= set(scalars)
    assert len(scalars["val/top1"]) == 2 and len(scalars["train/top1"]) == 2  # one point per epoch
    assert all(0.0 <= value <= 1.0 for _, value in scalars["val/top5"])
    assert "hp/best_val_top1" in scalars and "hp/test_top1" in scalars
    assert has_graph(run_dir / "tensorboard")
    params, metric_names = hparams(run_dir / "tensorboard")
    assert (
        params["optimizer/lr"] == 0.05
        and params["model/_target_"].endswith("LeNet5")
        and params["model/params_total"] > 0
    )
    assert {"hp/best_val_top1", "hp/val_top1", "hp/test_top1", "hp/test_top5"} <= set(metric_names)


def test_training_learns_the_task(run_dir):
    scalars = read_scalars(run_dir / "tensorboard")
    assert scalars["val/top1"][-1][1] > 0.9  # the synthetic bars are easy
    assert scalars["val/top5"][-1][1] >= scalars["val/top1"][-1][1]


def test_eval_reproduces_the_val_metrics_of_training(run_dir, mnist_dir, tmp_path):
    result = run_entry(
        "eval.py",
        f"ckpt_path={run_dir}/checkpoints/last.ckpt",
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}",
        "callbacks.progress_bar.refresh_rate=0",
    )
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    trained = read_scalars(run_dir / "tensorboard")
    for name in ("val/top1", "val/top5", "val/loss"):
        assert math.isclose(evaluated[name], trained[name][-1][1], rel_tol=1e-5, abs_tol=1e-6), name
    assert {"test/top1", "test/top5", "test/loss"} <= set(evaluated)
    assert " * val: top-1" in result.stdout and " * test: top-1" in result.stdout


def test_eval_overrides_apply_on_top_of_the_stored_config(run_dir, mnist_dir, tmp_path):
    run_entry(
        "eval.py",
        f"ckpt_path={run_dir}/checkpoints/last.ckpt",
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}",
        "splits=[val]",
        "data.eval_batch_size=7",
        "callbacks.progress_bar.refresh_rate=0",
    )
    stored = yaml.safe_load((tmp_path / ".hydra" / "config.yaml").read_text())
    assert stored["task_name"] == "eval"
    assert set(json.loads((tmp_path / "metrics.json").read_text())) == {"ckpt_path", "val/top1", "val/top5", "val/loss"}


def test_eval_refuses_a_checkpoint_of_another_network(run_dir, tmp_path):
    result = run_entry(
        "eval.py", f"ckpt_path={run_dir}/checkpoints/last.ckpt", f"hydra.run.dir={tmp_path}", "model=mlp", check=False
    )
    assert result.returncode == 2
    assert "belong to another network" in result.stderr
    assert "Traceback" not in result.stderr


def test_continuing_a_checkpoint_of_the_earlier_resume_format_is_one_sentence(run_dir, mnist_dir, tmp_path):
    """Checkpoints before the StatefulDataLoader kept the loader's place as `train_loader` beside the random states."""
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["callbacks"]["ExactResume"]["train_loader"] = {"epoch": 1, "batches": 0}
    earlier = tmp_path / "earlier.ckpt"
    torch.save(checkpoint, earlier)
    logs = tmp_path / "logs"
    result = run_entry(
        "train.py", *TINY, f"data.data_dir={mnist_dir}", f"paths.log_dir={logs}", f"ckpt_path={earlier}", check=False
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "written by an earlier version of train.py" in result.stderr and "Traceback" not in result.stderr
    assert not (logs / "train" / "runs").exists() or not any((logs / "train" / "runs").iterdir())


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param(None, "No checkpoint file at", marks=pytest.mark.slow),
        pytest.param(b"not a checkpoint at all", "truncated or not a PyTorch checkpoint", marks=pytest.mark.slow),
        ("truncated", "truncated or not a PyTorch checkpoint"),
    ],
)
def test_eval_refuses_bad_checkpoint_files(run_dir, tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    if content == "truncated":
        path.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    elif content is not None:
        path.write_bytes(content)
    result = run_entry("eval.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_eval_refuses_a_plain_state_dict(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    result = run_entry("eval.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'out'}", check=False)
    assert result.returncode == 2
    assert "is not a checkpoint written by this version of train.py" in result.stderr


def test_same_seed_gives_the_same_metrics(mnist_dir, tmp_path):
    curves = []
    for name in ("a", "b"):
        run_entry(
            "train.py",
            *TINY,
            f"data.data_dir={mnist_dir}",
            f"hydra.run.dir={tmp_path / name}",
            "seed=7",
            "test=false",
            "logger=csv",
        )
        curves.append((tmp_path / name / "csv" / "metrics.csv").read_text())
    assert curves[0] == curves[1]
    assert "val/top1" in curves[0]


@pytest.mark.slow  # test_bad_input's missing data folder runs the same refusal
def test_missing_data_offline_is_one_clear_sentence(tmp_path):
    empty = tmp_path / "nothing_here"
    result = run_entry(
        "train.py",
        f"data.data_dir={empty}",
        "data.download=false",
        "data.use_shipped_copy=false",
        f"hydra.run.dir={tmp_path / 'out'}",
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert str(empty / "MNIST" / "raw") in line and "data.data_dir" in line


def test_logger_none_trains_without_a_learning_rate_monitor(mnist_dir, tmp_path):
    run_entry(
        "train.py",
        *TINY,
        "trainer.max_epochs=1",
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}",
        "logger=none",
    )
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "csv").exists()


def test_callbacks_none_trains_and_tests_with_lightnings_own_checkpoint(mnist_dir, tmp_path):
    # Lightning then adds an unmonitored checkpoint: there is no best score, and train.py must not ask for one
    tiny = [override for override in TINY if not override.startswith("callbacks.")]  # no progress bar config to set
    result = run_entry(
        "train.py",
        *tiny,
        "trainer.max_epochs=1",
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}",
        "callbacks=none",
    )
    assert "test/top1" in result.stdout
    assert list(tmp_path.rglob("*.ckpt"))
