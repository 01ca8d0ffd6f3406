"""Export round trips: a trained LeNet through export.py and an LSTM through its functions, in every available format,
give the eager network's logits."""

import importlib.util
import json

import pytest
import torch

from datamodules.mnist import MNISTDataModule
from deployment.exporting import ONNX_PACKAGES, NormalizedNet, check_format, export, load_exported
from lightning_modules.classifier import ImageClassifier
from lightning_modules.nets.rnn import RowRNN
from runs.build import build_datamodule, build_module
from runs.deploying import export_checkpoint
from tests.helpers.commands import run_entry
from tests.helpers.compose import compose_config, group_options
from tests.helpers.tiny_runs import tiny_run
from user_errors import UserError

ONNX_MISSING = [package for package in ONNX_PACKAGES if importlib.util.find_spec(package) is None]
FORMATS = [
    pytest.param("onnx", marks=pytest.mark.skipif(bool(ONNX_MISSING), reason=f"pip install {' '.join(ONNX_MISSING)}")),
    "torchscript",
    "torch_export",
]
SUFFIX = {"onnx": "onnx", "torchscript": "ts", "torch_export": "pt2"}


@pytest.mark.parametrize(
    "file_format",
    [FORMATS[0], *(pytest.param(fmt, marks=pytest.mark.slow) for fmt in ("torchscript", "torch_export"))],
)  # ONNX, the format safe to share, in the default suite
def test_export_of_a_trained_lenet_matches_the_eager_network_and_writes_its_contract(
    file_format, mnist_dir, tmp_path_factory, tmp_path
):
    run = tiny_run(tmp_path_factory, mnist_dir)
    checkpoint = run / "checkpoints" / "last.ckpt"
    result = run_entry(
        "export.py",
        f"ckpt_path={checkpoint}",
        f"format={file_format}",
        f"data.data_dir={mnist_dir}",
        f"hydra.run.dir={tmp_path}",
        "verify_images=16",
    )
    assert "the export matches the eager model" in result.stdout
    exported = tmp_path / f"model.{SUFFIX[file_format]}"
    contract = json.loads((tmp_path / "model.json").read_text())
    assert contract["format"] == file_format and contract["file"] == exported.name
    assert contract["input"] == {
        "name": "images",
        "shape": ["batch", 1, 28, 28],
        "dtype": "uint8",
        "layout": "NCHW",
        "range": [0, 255],
    }
    assert contract["preprocessing"]["mean"] == [0.1307] and contract["preprocessing"]["std"] == [0.3081]
    assert contract["class_names"][3] == "3 - three" and contract["source_checkpoint"] == str(checkpoint)
    assert contract["verified"]["matches"] and contract["verified"]["max_abs_difference"] <= 1e-4

    # independently of export.py: 7 test images (another batch size than it was traced and verified on)
    datamodule = MNISTDataModule(str(mnist_dir), val_size=100, download=False)
    datamodule.setup("test")
    images = datamodule.test_set.images[:7]
    eager = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True).eval()
    with torch.no_grad():
        expected = eager(datamodule.normalize(images))
    assert torch.allclose(load_exported(exported, file_format)(images), expected, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("file_format", FORMATS)
def test_a_recurrent_network_exports_with_a_dynamic_batch(file_format, mnist_dir, tmp_path):
    """A 2-layer bidirectional LSTM (a tuple state, both directions read out), the datamodule's normalisation folded in."""
    torch.manual_seed(0)
    datamodule = MNISTDataModule(str(mnist_dir), val_size=100, download=False)
    datamodule.setup("validate")
    net = RowRNN(datamodule.input_shape, 10, cell="lstm", hidden_size=32, num_layers=2, bidirectional=True).eval()
    images = datamodule.val_set.images[:9]
    path = export(NormalizedNet(net, datamodule.mean, datamodule.std), images[:2], file_format, tmp_path)
    with torch.no_grad():
        expected = net(datamodule.normalize(images))
    assert torch.allclose(load_exported(path, file_format)(images), expected, atol=1e-5, rtol=0)


def test_an_unknown_format_is_one_sentence():
    with pytest.raises(UserError, match=r"^format must be one of onnx, torchscript, torch_export, not 'tflite'\.$"):
        check_format("tflite")


@pytest.mark.slow
@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("model", group_options("model"))
def test_every_model_of_the_zoo_exports_with_matching_logits(model, file_format, tmp_path):
    """Untrained networks at 3x64x64 (the Tiny-ImageNet shape), as train.py would build them."""
    torch.manual_seed(0)
    cfg = compose_config([f"model={model}", "data=fake", "data.num_classes=20"], tmp_path)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule).eval()
    images = torch.randint(0, 256, (3, *datamodule.input_shape), dtype=torch.uint8)
    path = export(NormalizedNet(module.net, datamodule.mean, datamodule.std), images[:2], file_format, tmp_path)
    with torch.no_grad():
        expected = module(datamodule.normalize(images))
    assert torch.allclose(load_exported(path, file_format)(images), expected, atol=1e-4, rtol=1e-4)


def test_an_export_that_does_not_match_stops_with_exit_code_2_and_says_so(mnist_dir, tmp_path_factory, tmp_path):
    run = tiny_run(tmp_path_factory, mnist_dir)
    cfg = compose_config(
        [
            f"ckpt_path={run}/checkpoints/last.ckpt",
            "format=torchscript",
            "tolerance=-1.0",
            f"data.data_dir={mnist_dir}",
        ],
        tmp_path,
        config_name="export",
    )
    with pytest.raises(
        UserError,
        match=r"^The torchscript export's logits differ from the eager network's by up to 0 on 32 val images, more than tolerance=-1\.0",
    ):
        export_checkpoint(cfg)
    assert json.loads((tmp_path / "model.json").read_text())["verified"]["matches"] is False
