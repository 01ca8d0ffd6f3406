"""Every option of every config group composes and builds; Hydra's own errors reach the user."""

import pytest
import torch
from lightning import Trainer

from runs.build import build_callbacks, build_datamodule, build_loggers, build_module, build_trainer
from tests.helpers.commands import run_entry
from tests.helpers.compose import compose_config, group_options

# trainer presets that need hardware this machine may lack are composed but not built
NEEDS_GPU = {"gpu", "ddp"}


def test_groups_exist():
    for group in (
        "data",
        "model",
        "optimizer",
        "scheduler",
        "trainer",
        "callbacks",
        "logger",
        "paths",
        "hydra",
        "experiment",
        "debug",
    ):
        assert group_options(group), f"conf/{group}/ has no options"


# seconds each to build and run at 28x28 on a CPU: in the slow suite
LARGE = {
    "alexnet",
    "vgg11",
    "vgg16",
    "googlenet",
    "resnet34",
    "resnet50",
    "densenet121",
    "efficientnet_b0",
    "mobilenet_v2",
}


@pytest.mark.parametrize(
    "model",
    [pytest.param(model, marks=pytest.mark.slow) if model in LARGE else model for model in group_options("model")],
)
def test_every_model_builds_from_the_datamodule_shape(model, tmp_path, mnist_dir):
    cfg = compose_config([f"model={model}", f"data.data_dir={mnist_dir}"], tmp_path)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    logits = module(torch.zeros(3, *datamodule.input_shape))
    assert logits.shape == (3, datamodule.num_classes)


@pytest.mark.parametrize("optimizer", group_options("optimizer"))
@pytest.mark.parametrize("scheduler", group_options("scheduler"))
def test_every_optimizer_and_scheduler_trains_a_step(optimizer, scheduler, tmp_path, mnist_dir):
    cfg = compose_config(
        [
            f"optimizer={optimizer}",
            f"scheduler={scheduler}",
            f"data.data_dir={mnist_dir}",
            "data.val_size=100",
            "data.download=false",
        ],
        tmp_path,
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = Trainer(
        accelerator="cpu",
        max_steps=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    before = [p.detach().clone() for p in module.parameters()]
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters())), "no parameter changed"
    assert isinstance(trainer.optimizers[0], getattr(torch.optim, cfg.optimizer._target_.rsplit(".", 1)[1]))


@pytest.mark.parametrize("trainer_name", group_options("trainer"))
def test_every_trainer_preset_composes(trainer_name, tmp_path):
    cfg = compose_config([f"trainer={trainer_name}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    if trainer_name not in NEEDS_GPU or torch.cuda.is_available():
        build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))


def test_ddp_preset_reads_naturally(tmp_path):
    cfg = compose_config(["trainer=ddp", "trainer.devices=4"], tmp_path)
    assert (cfg.trainer.strategy, cfg.trainer.accelerator, cfg.trainer.devices) == ("ddp", "gpu", 4)


@pytest.mark.parametrize("group", ["callbacks", "logger", "debug", "experiment"])
def test_every_option_of_the_run_groups_builds(group, tmp_path, mnist_dir):
    for option in group_options(group):
        cfg = compose_config([f"{group}={option}", f"data.data_dir={mnist_dir}"], tmp_path)
        build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))


def test_overrides_reach_the_config(tmp_path):
    cfg = compose_config(
        ["optimizer=adam", "optimizer.lr=1e-3", "trainer.max_epochs=5", "data.batch_size=256"], tmp_path
    )
    assert cfg.optimizer._target_ == "torch.optim.Adam"
    assert (cfg.optimizer.lr, cfg.trainer.max_epochs, cfg.data.batch_size) == (1e-3, 5, 256)


@pytest.mark.slow  # README's `--cfg job` and test_bad_input run the same path
def test_cfg_job_prints_the_composed_config():
    result = run_entry("train.py", "model=mlp", "optimizer.lr=0.123", "--cfg", "job")
    assert "lightning_modules.nets.mlp.MLP" in result.stdout
    assert "lr: 0.123" in result.stdout


def test_unknown_group_option_lists_the_choices():
    result = run_entry("train.py", "model=no_such_model", check=False)
    assert result.returncode != 0
    assert "Could not find 'model/no_such_model'" in result.stderr
    assert "Available options" in result.stderr and "lenet" in result.stderr


@pytest.mark.slow  # README's `--cfg job` and test_bad_input run the same path
def test_misspelt_key_is_refused():
    result = run_entry("train.py", "optimizer.learning_rate=0.1", check=False)
    assert result.returncode != 0
    assert "learning_rate" in result.stderr


def test_fake_data_has_the_chosen_shape(tmp_path):
    cfg = compose_config(
        ["data=fake", "data.input_shape=[1,28,28]", "data.num_classes=10", "data.train_size=64", "data.batch_size=16"],
        tmp_path,
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (16, 1, 28, 28) and batch["image"].dtype == torch.uint8
    assert int(batch["label"].max()) < 10
    normalized = datamodule.on_after_batch_transfer(batch, 0)["image"]
    assert normalized.dtype == torch.float32 and normalized.shape == (16, 1, 28, 28)


@pytest.mark.parametrize(
    "data",
    [["data.data_dir=unused", "data.download=false"], ["data=fake", "data.input_shape=[3,8,8]"]],
    ids=["mnist", "fake-rgb"],
)
def test_normalize_is_the_datasets_mean_and_std_per_channel(data, tmp_path):
    """normalize() keeps its scale and shift per device after the first batch: every batch must get the same formula."""
    datamodule = build_datamodule(compose_config(data, tmp_path))
    channels = datamodule.input_shape[0]
    for seed in (0, 1):  # the second batch is normalised with the kept scale and shift
        images = torch.randint(
            0, 256, (4, channels, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
        )
        mean, std = torch.tensor(datamodule.mean).view(1, -1, 1, 1), torch.tensor(datamodule.std).view(1, -1, 1, 1)
        torch.testing.assert_close(datamodule.normalize(images), (images / 255.0 - mean) / std)


def test_mnist_split_is_seeded_disjoint_and_keeps_the_test_set_apart(tmp_path, mnist_dir):
    cfg = compose_config([f"data.data_dir={mnist_dir}", "data.val_size=100", "data.download=false"], tmp_path)
    first, second = build_datamodule(cfg), build_datamodule(cfg)
    first.setup("fit"), second.setup("fit")
    train_index, val_index = set(first.train_set.source_index.tolist()), set(first.val_set.source_index.tolist())
    assert len(val_index) == 100 and len(train_index) == 500 and not train_index & val_index
    assert torch.equal(first.val_set.source_index, second.val_set.source_index)
    assert len(first.test_set) == 200
    assert first.source("val", 3).endswith("train-images-idx3-ubyte[3]") and first.source("test", 3).endswith(
        "t10k-images-idx3-ubyte[3]"
    )
