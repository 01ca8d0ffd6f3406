"""Transfer learning: weights from the torch hub cache or a file (written here; nothing is downloaded), the new
head, grey images with RGB weights, a frozen backbone and the head's own learning rate."""

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision
from lightning import Trainer
from torchvision.models import get_model_weights

from lightning_modules.nets.torchvision_net import TorchvisionNet
from tests.helpers.commands import run_entry
from tests.test_models import build, data_overrides
from user_errors import UserError


def save_state_dict(model: torch.nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def hub_cache_file(torch_home: Path, arch: str) -> Path:
    """Where torchvision's weights API looks for (and downloads) the default ImageNet weights of `arch`."""
    return torch_home / "hub" / "checkpoints" / Path(urlparse(get_model_weights(arch).DEFAULT.url).path).name


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> tuple[torchvision.models.ResNet, Path]:
    torch.manual_seed(0)
    source = torchvision.models.resnet18().eval()
    return source, save_state_dict(source, tmp_path_factory.mktemp("weights") / "resnet18.pt")


def trunk(resnet: torch.nn.Module) -> torch.nn.Sequential:
    """Everything up to the classifier: the features the head reads."""
    return torch.nn.Sequential(*list(resnet.children())[:-1])


def test_torchvision_weights_reach_a_grey_network_with_a_new_head(resnet18_file, tmp_path, mnist_dir):
    source, path = resnet18_file
    _, module = build(["model=resnet18", f"model.weights_path={path}", *data_overrides("mnist", mnist_dir)], tmp_path)
    net = module.net.model.eval()
    assert net.conv1.kernel_size == (7, 7)  # loading weights: the ImageNet stem they were learned with
    assert torch.equal(net.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(net.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(net.layer2[0].bn1.running_var, source.layer2[0].bn1.running_var)
    assert net.fc.weight.shape == (10, 512)
    # a grey image gives the features the RGB network gives for that image in all three channels
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(trunk(net)(images), trunk(source)(images.expand(-1, 3, -1, -1)), atol=1e-5)


def test_frozen_backbone_and_head_learning_rate_reach_the_optimizer(resnet18_file, tmp_path, mnist_dir):
    _, path = resnet18_file
    mnist = data_overrides("mnist", mnist_dir)
    _, frozen = build(
        ["model=resnet18", f"model.weights_path={path}", "model.freeze_backbone=true", "model.head_lr=0.5", *mnist],
        tmp_path,
    )
    assert [name for name, parameter in frozen.net.named_parameters() if parameter.requires_grad] == [
        "model.fc.weight",
        "model.fc.bias",
    ]
    (group,) = frozen.net.parameter_groups()
    assert group["lr"] == 0.5 and [tuple(parameter.shape) for parameter in group["params"]] == [(10, 512), (10,)]

    datamodule, module = build(
        [
            "model=resnet18",
            f"model.weights_path={path}",
            "model.head_lr=0.5",
            "optimizer.lr=0.01",
            "scheduler=onecycle",
            *mnist,
        ],
        tmp_path,
    )
    backbone_before = module.net.model.layer1[0].conv1.weight.detach().clone()
    trainer = Trainer(
        accelerator="cpu",
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    backbone, head = trainer.optimizers[0].param_groups
    assert len(head["params"]) == 2 and len(backbone["params"]) == 62 - 2
    # one-cycle keeps the head's learning rate 50x the backbone's, at its peak and on the way
    assert head["max_lr"] == pytest.approx(0.5) and backbone["max_lr"] == pytest.approx(0.01)
    assert head["lr"] == pytest.approx(50 * backbone["lr"])
    assert not torch.equal(backbone_before, module.net.model.layer1[0].conv1.weight)


def test_pretrained_weights_come_from_the_torch_hub_cache(resnet18_file, tmp_path, monkeypatch):
    source, _ = resnet18_file
    save_state_dict(source, hub_cache_file(tmp_path, "resnet18"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _, module = build(["model=resnet18", "model.pretrained=true", *data_overrides("tiny", None)], tmp_path)
    net = module.net.model
    assert torch.equal(net.conv1.weight, source.conv1.weight) and torch.equal(
        net.layer4[1].bn2.weight, source.layer4[1].bn2.weight
    )
    assert net.fc.out_features == 200


@pytest.mark.parametrize("channels", [3, 1])
def test_pretrained_googlenet_leaves_out_the_auxiliary_classifiers(channels, tmp_path, monkeypatch):
    # torchvision's file holds the auxiliary classifiers, which its builder (and this adapter) then drop
    source = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    save_state_dict(source, hub_cache_file(tmp_path, "googlenet"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = TorchvisionNet((channels, 64, 64), 5, "googlenet", pretrained=True)
    assert net.model.aux1 is None and torch.equal(
        net.model.inception4a.branch1.conv.weight, source.inception4a.branch1.conv.weight
    )
    # the ported weights expect RGB rescaled to [-1, 1], which torchvision's input transform does; a grey image has no RGB
    assert net.model.transform_input == (channels == 3)
    net.train()
    assert isinstance(net(torch.randn(2, channels, 64, 64)), torch.Tensor)


def test_pretrained_weights_offline_without_the_cache_are_one_clear_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    for variable in ("https_proxy", "HTTPS_PROXY"):  # nothing listens there: offline, without waiting for a timeout
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    result = run_entry(
        "summarize.py",
        "model=resnet18",
        "model.pretrained=true",
        "data=fake",
        f"hydra.run.dir={tmp_path / 'out'}",
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert (
        "ImageNet weights of resnet18 cannot be read from the torch cache" in line
        and str(hub_cache_file(tmp_path / "empty", "resnet18")) in line
    )
    assert "model.weights_path=FILE" in line


def test_a_train_py_checkpoint_fine_tunes_on_another_dataset(mnist_dir, tmp_path):
    first, second = tmp_path / "mnist", tmp_path / "rgb"
    short = [
        "trainer=cpu",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.num_sanity_val_steps=0",
        "test=false",
        "callbacks.progress_bar.refresh_rate=0",
        "logger=csv",
    ]
    mnist = [
        f"data.data_dir={mnist_dir}",
        "data.download=false",
        "data.val_size=100",
        "data.batch_size=8",
        "data.eval_batch_size=8",
    ]
    run_entry("train.py", "model=resnet18", *short, *mnist, f"hydra.run.dir={first}")
    checkpoint = first / "checkpoints" / "last.ckpt"

    rgb = [
        "data=fake",
        "data.input_shape=[3,32,32]",
        "data.num_classes=5",
        "data.train_size=16",
        "data.val_size=8",
        "data.batch_size=8",
        "data.eval_batch_size=8",
    ]
    transfer = [f"model.weights_path={checkpoint}", "model.freeze_backbone=true", "model.small_input_stem=true"]
    run_entry("train.py", "model=resnet18", *short, *rgb, *transfer, f"hydra.run.dir={second}")

    trained = torch.load(checkpoint, weights_only=True)["state_dict"]
    tuned = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(
        tuned["net.model.conv1.weight"], trained["net.model.conv1.weight"].expand(-1, 3, -1, -1) / 3
    )  # grey stem spread over RGB
    assert torch.equal(tuned["net.model.layer4.1.conv2.weight"], trained["net.model.layer4.1.conv2.weight"])  # frozen
    assert tuned["net.model.fc.weight"].shape == (5, 512)
    # the layer report (Lightning's summary) shows the split too
    assert re.search(r"2\.6 K +Trainable params\n11\.2 M +Non-trainable params", (second / "layers.txt").read_text())
    (said,) = [line for line in (second / "train.log").read_text().splitlines() if "Transfer learning:" in line]
    assert (
        f"weights from {checkpoint}" in said
        and "replaced (freshly initialised): fc; conv1 loaded with its 1 input channels fitted to 3" in said
    )
    assert (
        "frozen: conv1, bn1, layer1, layer2, layer3, layer4" in said
        and "parameters: 2,565 trainable, 11,168,832 frozen" in said
    )


def test_weights_the_network_cannot_use_are_refused_in_one_sentence(resnet18_file, tmp_path, mnist_dir):
    _, path = resnet18_file
    small_stem = ["model=resnet18", *data_overrides("mnist", mnist_dir)]
    resnet34 = save_state_dict(torchvision.models.resnet34(), tmp_path / "resnet34.pt")
    with pytest.raises(
        UserError,
        match=r"belong to another network than the one built from this config \(\d+ tensors differ, e\.g\. .* in the file, absent here\): use weights of the same architecture",
    ):
        build([*small_stem, f"model.weights_path={resnet34}"], tmp_path)
    lenet_checkpoint = tmp_path / "lenet.ckpt"
    torch.save({"state_dict": {"net.features.0.weight": torch.zeros(6, 1, 5, 5)}, "run_config": {}}, lenet_checkpoint)
    with pytest.raises(UserError, match="holds no torchvision-backed network"):
        build([*small_stem, f"model.weights_path={lenet_checkpoint}"], tmp_path)
    with pytest.raises(UserError, match="No checkpoint file at"):
        build([*small_stem, f"model.weights_path={tmp_path / 'absent.pt'}"], tmp_path)
    with pytest.raises(UserError, match="set only one of them"):
        build([*small_stem, f"model.weights_path={path}", "model.pretrained=true"], tmp_path)
    with pytest.raises(UserError, match="none are loaded"):
        build([*small_stem, "model.freeze_backbone=true"], tmp_path)
    with pytest.raises(UserError, match="not for resnet18"):
        build([*small_stem, "+model.batch_norm=true"], tmp_path)
