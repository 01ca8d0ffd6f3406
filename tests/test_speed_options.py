"""The speed options do what they say: channels-last weights and inputs, a compiled network, the precision plugin,
pinned memory and data held on the device; the mnist_fast preset trains through train.py."""

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler

from datamodules.base import ArrayImageDataset
from datamodules.fake import FakeDataModule
from lightning_modules.classifier import ImageClassifier
from runs.build import build_trainer
from tests.helpers.commands import TINY, run_entry
from tests.helpers.compose import compose_config

LENET = {"_target_": "lightning_modules.nets.lenet.LeNet5", "batch_norm": True}
SGD = {"_target_": "torch.optim.SGD", "lr": 0.1}


def classifier(channels: int = 3, **options) -> ImageClassifier:
    """3 channels: a single-channel tensor is channels-last and contiguous at once."""
    return ImageClassifier(
        net=LENET, optimizer=SGD, scheduler=None, input_shape=(channels, 28, 28), num_classes=10, **options
    )


def on_cpu_trainer(module: ImageClassifier) -> ImageClassifier:
    module.trainer = Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    return module


def input_formats(module: ImageClassifier, images: torch.Tensor) -> list[bool]:
    """Whether the network's input was channels-last, for one forward pass."""
    seen = []
    handle = module.net.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    module(images)
    handle.remove()
    return seen


def test_channels_last_converts_the_weights_and_the_inputs():
    module = on_cpu_trainer(classifier(channels_last=True))
    module.setup("fit")
    conv = module.net.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert input_formats(module, torch.randn(4, 3, 28, 28)) == [True]


def test_channels_last_is_left_off_on_the_cpu_by_default():
    module = on_cpu_trainer(classifier())
    module.setup("fit")
    assert module.net.features[0].weight.is_contiguous()
    assert input_formats(module, torch.randn(4, 3, 28, 28)) == [False]


def test_compile_compiles_the_network_in_place_and_keeps_its_results_and_names():
    compiled_graphs = []

    def counting_backend(graph, example_inputs):  # torch.compile's backend interface: runs the captured graph as it is
        compiled_graphs.append(graph)
        return graph.forward

    module = on_cpu_trainer(classifier(compile={"backend": counting_backend})).eval()
    images = torch.randn(4, 3, 28, 28)
    expected, names = module(images), list(module.state_dict())
    assert not compiled_graphs
    module.setup("fit")
    assert torch.allclose(module(images), expected)
    assert compiled_graphs  # the forward pass ran through torch.compile
    assert list(module.state_dict()) == names  # checkpoints stay loadable by the plain network


def test_gpu_preset_trains_in_bfloat16(tmp_path):
    assert compose_config(["trainer=gpu"], tmp_path).trainer.precision == "bf16-mixed"
    cfg = compose_config(["trainer=cpu", "trainer.precision=bf16-mixed"], tmp_path)
    trainer = build_trainer(cfg, callbacks=[], loggers=[])
    assert isinstance(trainer.precision_plugin, MixedPrecision) and trainer.precision_plugin.precision == "bf16-mixed"


def test_the_profiler_is_lightnings_as_configured(tmp_path):
    trainer = build_trainer(compose_config(["trainer=cpu"], tmp_path), callbacks=[], loggers=[])
    assert isinstance(trainer.profiler, PassThroughProfiler)  # trainer.profiler=null: none
    profiled = build_trainer(
        compose_config(["trainer=cpu", "trainer.profiler=simple"], tmp_path), callbacks=[], loggers=[]
    )
    assert isinstance(profiled.profiler, SimpleProfiler)


def test_pinned_memory_only_when_asked_or_on_a_gpu():
    datamodule = FakeDataModule(input_shape=(1, 28, 28), num_classes=10, train_size=64, val_size=32, test_size=32)
    datamodule.setup("fit")
    assert datamodule.train_dataloader().pin_memory is False  # no trainer: the CPU
    assert FakeDataModule(input_shape=(1, 28, 28), num_classes=10, train_size=64, pin_memory=True).pin_memory is True


def test_a_dataset_moved_to_a_device_serves_its_batches_from_there():
    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    dataset = ArrayImageDataset(images, torch.arange(10), torch.arange(100, 110))
    dataset.to(torch.device("meta"))  # a device without memory: shows where the tensors and the indexing go
    batch = dataset.__getitems__([3, 1, 4])
    assert {tensor.device.type for tensor in batch.values()} == {"meta"}
    assert batch["image"].shape == (3, 1, 4, 4)


@pytest.fixture(scope="module")
def fast_run(mnist_dir, tmp_path_factory):
    """The mnist_fast preset on the tiny generated MNIST, one epoch, with the speed options switched on on the CPU."""
    out = tmp_path_factory.mktemp("mnist_fast")
    run_entry(
        "train.py",
        "experiment=mnist_fast",
        *TINY,
        "trainer.max_epochs=1",
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={out}",
        "trainer.precision=bf16-mixed",
        "module.channels_last=true",
        "module.compile={backend: eager}",
    )
    return out


def test_mnist_fast_trains_validates_once_and_tests(fast_run):
    checkpoint = torch.load(fast_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["channels_last"] is True and checkpoint["hyper_parameters"]["compile"] == {
        "backend": "eager"
    }
    assert (
        checkpoint["run_config"]["trainer"]["check_val_every_n_epoch"] == 1
    )  # = max_epochs: one validation, at the end
    assert list(checkpoint["state_dict"]) == list(classifier(channels=1).state_dict())
    assert sorted(path.name for path in (fast_run / "predictions").glob("*.csv")) == [
        "test-epoch000.csv",
        "val-epoch000.csv",
    ]
