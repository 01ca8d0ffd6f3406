"""The model zoo: every model on MNIST's and Tiny-ImageNet's shapes, built from its yaml as train.py builds it;
torchvision parameter counts; the small-input stems; the recurrent models' options; the layer report."""

import re

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.model_summary import get_human_readable_count, summarize
from torchvision.models import get_model_weights

from callbacks.layer_report import classifier_layer_report
from lightning_modules.nets.rnn import RowRNN
from runs.build import build_datamodule, build_module
from tests.helpers.commands import REPO, run_entry
from tests.helpers.compose import compose_config, group_options
from tests.helpers.tensorboard_events import has_graph
from user_errors import UserError

MODELS = group_options("model")
BATCH = 4


def data_overrides(dataset: str, mnist_dir) -> list[str]:
    if dataset == "mnist":  # the generated IDX files: 1x28x28, 10 classes
        return [f"data.data_dir={mnist_dir}", "data.download=false", "data.val_size=100", f"data.batch_size={BATCH}"]
    # Tiny-ImageNet's shape (3x64x64, 200 classes) with random images
    return ["data=fake", "data.train_size=8", "data.val_size=4", "data.test_size=4", f"data.batch_size={BATCH}"]


def build(overrides: list[str], tmp_path):
    cfg = compose_config(overrides, tmp_path)
    datamodule = build_datamodule(cfg)
    return datamodule, build_module(cfg, datamodule)


def first_batch(datamodule) -> dict[str, torch.Tensor]:
    datamodule.setup("fit")
    return datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)


ROW = re.compile(
    r"^\d+ +\| (?P<name>\S+) +\| (?P<type>\S+) +\| (?P<params>[^|]+?) +\| \S+ +\| (?P<flops>[^|]+?) +\| [^|]+\| (?P<shape>.+?) *$"
)


def report_rows(report: str) -> dict[str, dict[str, str]]:
    """layer name -> its type, params, FLOPs and output sizes, as Lightning's summary prints them."""
    return {match["name"]: match.groupdict() for match in map(ROW.match, report.splitlines()) if match}


def logits_on(module, batch) -> torch.Tensor:
    torch.manual_seed(0)  # the same dropout masks each time
    return module(batch["image"])


def loss_on(module, batch) -> torch.Tensor:
    return module.loss_fn(logits_on(module, batch), batch["label"])


# the heaviest at 64x64 on a CPU (seconds each, as much as the rest together): in the slow suite
HEAVY_AT_64 = {"vgg11", "vgg16", "googlenet", "resnet34", "resnet50", "densenet121", "alexnet", "nin"}
CASES = [
    pytest.param(
        model,
        dataset,
        marks=[]
        if model in ("lenet", "mlp", "resnet18", "rnn", "lstm", "torchvision")
        and not (dataset == "tiny" and model in HEAVY_AT_64)
        else [pytest.mark.slow],
    )
    for model in MODELS
    for dataset in ("mnist", "tiny")
]


@pytest.mark.parametrize("model, dataset", CASES)
def test_model_trains_on_the_dataset_shape(model, dataset, tmp_path, mnist_dir):
    torch.manual_seed(0)  # the same initial weights whatever ran before
    datamodule, module = build([f"model={model}", *data_overrides(dataset, mnist_dir)], tmp_path)
    batch = first_batch(datamodule)
    module.train()

    before = loss_on(module, batch)
    assert before.shape == () and before.requires_grad
    optimizer = torch.optim.SGD(
        module.parameters(), lr=1e-3
    )  # small enough for every model's curvature at initialisation
    before.backward()
    optimizer.step()
    with torch.no_grad():
        logits = logits_on(module, batch)
        after = module.loss_fn(logits, batch["label"])
    assert isinstance(logits, torch.Tensor), f"{model} returns {type(logits).__name__} in training mode"
    assert logits.shape == (BATCH, datamodule.num_classes)
    assert after < before, (
        f"{model}: one step on a fixed batch took the loss from {before.item():.4f} to {after.item():.4f}"
    )

    rows = report_rows(classifier_layer_report(module))
    total = sum(parameter.numel() for parameter in module.net.parameters())
    assert rows["net"]["params"] == get_human_readable_count(total)
    assert rows["net"]["shape"] == f"[2, {datamodule.num_classes}]"  # the module's example input: two images
    assert len([name for name in rows if name.split(".")[0] == "net"]) == len(list(module.net.named_modules()))


# tracing and converting a graph of thousands of nodes takes these 5-15 s each
LARGE_GRAPHS = {"densenet121", "efficientnet_b0", "googlenet", "resnet50", "resnet34", "mobilenet_v2"}


@pytest.mark.parametrize(
    "model", [pytest.param(model, marks=[pytest.mark.slow] if model in LARGE_GRAPHS else []) for model in MODELS]
)
def test_tensorboard_graph_traces_every_model(model, tmp_path, mnist_dir):
    _, module = build([f"model={model}", *data_overrides("mnist", mnist_dir)], tmp_path)
    logger = TensorBoardLogger(tmp_path, name="tb", version="", log_graph=True)
    logger.log_graph(module)
    logger.experiment.flush()
    assert has_graph(tmp_path / "tb")


# the named yamls of torchvision's models (conf/model/NAME.yaml with arch: NAME)
TORCHVISION_MODELS = [
    model for model in MODELS if f"arch: {model}\n" in (REPO / "conf" / "model" / f"{model}.yaml").read_text()
]


@pytest.mark.parametrize(
    "arch, batch_norm", [(arch, False) for arch in TORCHVISION_MODELS] + [("vgg11", True), ("vgg16", True)]
)
def test_imagenet_configuration_has_torchvisions_parameter_count(arch, batch_norm, tmp_path):
    imagenet = ["data=fake", "data.input_shape=[3,224,224]", "data.num_classes=1000", "model.small_input_stem=false"]
    switch = [f"model.batch_norm={batch_norm}"] if arch.startswith("vgg") else []
    _, module = build([f"model={arch}", *imagenet, *switch], tmp_path)
    count = sum(parameter.numel() for parameter in module.net.parameters())
    assert count == get_model_weights(f"{arch}_bn" if batch_norm else arch).DEFAULT.meta["num_params"]
    if arch == "resnet18":
        assert count == 11_689_512


def test_small_input_stem_is_a_3x3_stride_1_convolution_without_the_max_pool(tmp_path, mnist_dir):
    mnist = data_overrides("mnist", mnist_dir)
    _, small = build(["model=resnet18", *mnist], tmp_path)  # the default when training from scratch
    _, imagenet = build(["model=resnet18", "model.small_input_stem=false", *mnist], tmp_path)
    conv1 = small.net.model.conv1
    assert (conv1.in_channels, conv1.kernel_size, conv1.stride) == (1, (3, 3), (1, 1))
    assert isinstance(small.net.model.maxpool, torch.nn.Identity)
    assert imagenet.net.model.conv1.kernel_size == (7, 7) and isinstance(imagenet.net.model.maxpool, torch.nn.MaxPool2d)
    count = lambda module: sum(parameter.numel() for parameter in module.parameters())  # noqa: E731
    assert count(imagenet.net) - count(small.net) == 64 * 1 * (7 * 7 - 3 * 3)
    # the last stage sees 4x4 of a 28x28 digit with the small stem, 1x1 with the ImageNet stem
    assert report_rows(classifier_layer_report(small))["net.model.layer4"]["shape"] == "[2, 512, 4, 4]"
    assert report_rows(classifier_layer_report(imagenet))["net.model.layer4"]["shape"] == "[2, 512, 1, 1]"


@pytest.mark.parametrize("model", ["alexnet", "vgg11", "densenet121", "nin"])
def test_an_imagenet_stem_that_would_shrink_mnist_to_nothing_is_one_clear_sentence(model, tmp_path, mnist_dir):
    with pytest.raises(UserError, match=r"cannot take the 1x28x28 images .*: set model.small_input_stem=true"):
        build([f"model={model}", "model.small_input_stem=false", *data_overrides("mnist", mnist_dir)], tmp_path)


def test_vgg_batch_norm_switch_selects_torchvisions_bn_variant(tmp_path, mnist_dir):
    _, module = build(["model=vgg11", "model.batch_norm=true", *data_overrides("mnist", mnist_dir)], tmp_path)
    assert sum(isinstance(layer, torch.nn.BatchNorm2d) for layer in module.net.modules()) == 8


def expected_recurrent_parameters(
    cell: str, input_size: int, hidden: int, layers: int, bidirectional: bool, classes: int
) -> int:
    """Per layer and direction: gates x (input weights + recurrent weights + two biases); then the head."""
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    directions = 2 if bidirectional else 1
    total, size = 0, input_size
    for _ in range(layers):
        total += directions * gates * (hidden * size + hidden * hidden + 2 * hidden)
        size = directions * hidden
    return total + (directions * hidden + 1) * classes


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, False), (1, True), (3, True)])
def test_recurrent_options_change_the_parameter_count_as_expected(cell, layers, bidirectional, tmp_path):
    overrides = [
        f"model={cell}",
        f"model.num_layers={layers}",
        f"model.bidirectional={bidirectional}",
        "model.hidden_size=32",
    ]
    _, module = build([*overrides, *data_overrides("tiny", None)], tmp_path)
    count = sum(parameter.numel() for parameter in module.net.parameters())
    assert count == expected_recurrent_parameters(cell, 64 * 3, 32, layers, bidirectional, 200)


def test_image_is_read_row_by_row_with_each_pixels_channels_together():
    image = torch.arange(2 * 3 * 4).reshape(1, 2, 3, 4)  # C=2, H=3, W=4
    sequence = RowRNN.to_sequence(image)
    assert sequence.shape == (1, 3, 8)
    assert sequence[0, 1].tolist() == [image[0, c, 1, w].item() for w in range(4) for c in range(2)]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("readout", ["last", "mean", "max"])
def test_last_readout_reads_both_directions_final_states_and_pooling_reads_every_step(cell, readout):
    net = RowRNN((1, 28, 28), 10, cell=cell, hidden_size=8, num_layers=2, bidirectional=True, readout=readout).eval()
    images, seen = torch.randn(3, 1, 28, 28), {}
    net.head.register_forward_hook(lambda module, args, output: seen.update(features=args[0]))
    net(images)
    outputs, _ = net.rnn(net.to_sequence(images))
    # forward direction ends at the last row, backward direction at the first
    last = torch.cat([outputs[:, -1, :8], outputs[:, 0, 8:]], dim=1)
    assert torch.allclose(seen["features"], {"last": last, "mean": outputs.mean(1), "max": outputs.amax(1)}[readout])


def test_layer_report_of_lenet_matches_a_hand_count(tmp_path, mnist_dir):
    _, module = build(["model=lenet", *data_overrides("mnist", mnist_dir)], tmp_path)
    rows = report_rows(classifier_layer_report(module))
    assert [name for name in rows if name.startswith("net")] == [
        "net",
        "net.features",
        *(f"net.features.{i}" for i in range(7)),
        "net.classifier",
        *(f"net.classifier.{i}" for i in range(5)),
    ]
    # 16x6x5x5 weights + 16 biases; 2 images x 10x10 outputs x 16 channels x 6x5x5 inputs, 2 FLOPs each
    assert rows["net.features.3"] == {
        "name": "net.features.3",
        "type": "Conv2d",
        "params": "2.4 K",
        "flops": "960 K",
        "shape": "[2, 16, 10, 10]",
    }
    assert rows["net.features.6"]["shape"] == "[2, 400]" and rows["net.classifier.4"]["shape"] == "[2, 10]"
    # 28*28*6*25 + 10*10*16*150 + 400*120 + 120*84 + 84*10 multiply-accumulates per image
    summary = summarize(module, max_depth=-1)
    assert summary.total_flops == 2 * 2 * 416_520 and summary.total_parameters == 61_706


def test_summarize_prints_every_layer_with_the_train_overrides(tmp_path):
    result = run_entry("summarize.py", "model=alexnet", "data=fake", "data.num_classes=7", f"hydra.run.dir={tmp_path}")
    rows = report_rows(result.stdout)
    assert rows["net.model.features.3"]["shape"] == "[2, 192, 31, 31]" and rows["net"]["shape"] == "[2, 7]"
    assert (tmp_path / "layers.txt").read_text() in result.stdout


def test_summarize_turns_a_collapsing_stem_into_one_sentence(tmp_path):
    result = run_entry(
        "summarize.py",
        "model=alexnet",
        "model.small_input_stem=false",
        "data=fake",
        "data.input_shape=[1,28,28]",
        f"hydra.run.dir={tmp_path}",
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "The model alexnet cannot take the 1x28x28 images" in line and "model.small_input_stem=true" in line


@pytest.mark.parametrize(
    "arch",
    [
        "squeezenet1_0",
        *(
            pytest.param(arch, marks=pytest.mark.slow)
            for arch in ("convnext_tiny", "regnet_y_400mf", "shufflenet_v2_x1_0")
        ),
    ],
)
def test_any_torchvision_classifier_by_name_prints_its_layer_report(arch, tmp_path):
    result = run_entry(
        "summarize.py",
        "model=torchvision",
        f"model.arch={arch}",
        "data=fake",
        "data.num_classes=7",
        f"hydra.run.dir={tmp_path}",
    )
    assert report_rows(result.stdout)["net"]["shape"] == "[2, 7]" and "Total params" in result.stdout


def test_squeezenets_head_is_its_final_1x1_convolution(tmp_path):
    _, module = build(["model=torchvision", "model.arch=squeezenet1_0", "data=fake", "data.num_classes=7"], tmp_path)
    assert module.net.head_name == "classifier.1" and module.net.model.classifier[1].out_channels == 7


def test_vit_takes_the_datasets_image_size_and_refuses_one_its_patches_do_not_divide(tmp_path):
    _, module = build(["model=torchvision", "model.arch=vit_b_16", "data=fake", "data.input_shape=[3,64,64]"], tmp_path)
    assert module.net.model.image_size == 64
    with pytest.raises(
        UserError, match=r"model.arch=vit_b_16 cuts square images into 16x16 patches and cannot take 28x28 images"
    ):
        build(["model=torchvision", "model.arch=vit_b_16", "data=fake", "data.input_shape=[1,28,28]"], tmp_path)


def test_an_arch_that_is_not_a_classification_model_names_the_close_ones(tmp_path):
    with pytest.raises(
        UserError, match=r"model.arch=resnet_18 is not a torchvision image classification model: did you mean resnet18"
    ):
        build(["model=torchvision", "model.arch=resnet_18", "data=fake"], tmp_path)
