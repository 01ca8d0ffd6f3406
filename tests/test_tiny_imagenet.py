"""Tiny-ImageNet on a small dataset generated in the official tiny-imagenet-200 layout."""

import functools
import hashlib
import http.server
import json
import logging
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.build import build_datamodule, build_module
from core.errors import UserError
from datamodules.tiny_imagenet import TinyImageNetDataModule
from tests.compose import compose_config
from tests.conftest import run_entry
from tests.tensorboard_events import read_scalars
from benchmarks.tiny_imagenet_files import class_from_pixels, write_tiny_imagenet

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, TEST_COUNT = 5, 12, 4, 10
QUIET = ["trainer=cpu", "data=tiny_imagenet", "model=lenet", "data.download=false", "callbacks.progress_bar.refresh_rate=0"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A data_dir holding tiny-imagenet-200/ as generated; tests that change files work on a copy."""
    data_dir = tmp_path_factory.mktemp("pristine")
    write_tiny_imagenet(data_dir, CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, TEST_COUNT)
    return data_dir


@pytest.fixture
def data_dir(pristine, tmp_path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine / "tiny-imagenet-200", copy / "tiny-imagenet-200")
    return copy


def datamodule(data_dir: Path, **options) -> TinyImageNetDataModule:
    return TinyImageNetDataModule(str(data_dir), download=False, batch_size=8, eval_batch_size=7, **options)


def ready(data_dir: Path, stage: str = "fit", **options) -> TinyImageNetDataModule:
    module = datamodule(data_dir, **options)
    module.prepare_data()
    module.setup(stage)
    return module


def all_batches(loader) -> dict[str, torch.Tensor]:
    batches = list(loader)
    return {key: torch.cat([batch[key] for batch in batches]) for key in batches[0]}


# --- format: classes, labels, splits -------------------------------------------------------------------


def test_classes_follow_wnids_and_names_come_from_words(pristine):
    module = datamodule(pristine)
    wnids = (pristine / "tiny-imagenet-200" / "wnids.txt").read_text().split()
    assert module.num_classes == CLASSES == len(wnids)
    assert module.class_names == [f"synthetic class {k}" for k in range(CLASSES)]  # words.txt lists other synsets too


def test_train_labels_are_the_wnids_line_of_the_image_folder(pristine):
    module = ready(pristine)
    wnids = (pristine / "tiny-imagenet-200" / "wnids.txt").read_text().split()
    train = module.train_set
    assert len(train) == CLASSES * TRAIN_PER_CLASS
    for position in range(len(train)):
        path = Path(module.source("train", int(train.source_index[position])))
        assert wnids.index(path.parent.parent.name) == int(train.labels[position])
        assert class_from_pixels(train.images[position]) == int(train.labels[position])  # the pixels are that file's


def test_val_labels_come_from_the_annotation_file(pristine):
    module = ready(pristine)
    root = pristine / "tiny-imagenet-200"
    wnids = (root / "wnids.txt").read_text().split()
    annotated = dict(line.split("\t")[:2] for line in (root / "val" / "val_annotations.txt").read_text().splitlines())
    val = all_batches(module.val_dataloader())
    assert len(val["label"]) == CLASSES * VAL_PER_CLASS
    for index, label, image in zip(val["index"].tolist(), val["label"].tolist(), val["image"]):
        path = Path(module.source("val", index))
        assert path.name == f"val_{index}.JPEG"  # natural order: val_<i> is sample i
        assert label == wnids.index(annotated[path.name])
        assert class_from_pixels(image.numpy()) == label
    assert module.source("test", 3) == module.source("val", 3)  # the labelled test stage reads val/ too


def test_test_split_is_unlabelled_and_served_for_prediction(pristine):
    module = ready(pristine, stage="predict")
    batches = list(module.predict_dataloader())
    assert all(set(batch) == {"image", "index"} for batch in batches)
    assert sum(len(batch["image"]) for batch in batches) == TEST_COUNT
    assert module.source("predict", 4).endswith("tiny-imagenet-200/test/images/test_4.JPEG")


def test_single_channel_jpegs_reach_the_model_as_three_channels(pristine):
    grayscale = [path for path in sorted((pristine / "tiny-imagenet-200" / "train").rglob("*.JPEG")) if Image.open(path).mode == "L"]
    assert grayscale, "the generator writes single-channel JPEGs"
    module = ready(pristine)
    files = [Path(module.source("train", int(index))) for index in module.train_set.source_index]
    image = module.train_set.images[files.index(grayscale[0])]
    assert image.shape == (3, 64, 64)
    assert np.array_equal(image[0], image[1]) and np.array_equal(image[0], image[2])
    assert np.array_equal(image[0], np.asarray(Image.open(grayscale[0])))


def test_cached_and_uncached_pipelines_give_identical_pixels(pristine, tmp_path):
    cached = ready(pristine, cache_dir=str(tmp_path / "cache"))
    uncached = ready(pristine, cache=False)
    for name in ("train", "val"):
        a, b = getattr(cached, f"{name}_set"), getattr(uncached, f"{name}_set")
        everything = list(range(len(a)))
        assert torch.equal(a.__getitems__(everything)["image"], b.__getitems__(everything)["image"]), name
        assert torch.equal(a.__getitems__(everything)["label"], b.__getitems__(everything)["label"]), name
    a, b = all_batches(cached.val_dataloader()), all_batches(uncached.val_dataloader())
    assert all(torch.equal(a[key], b[key]) for key in ("image", "label", "index"))
    normalized = [module.on_after_batch_transfer(batch, 0)["image"] for module, batch in ((cached, a), (uncached, b))]
    assert torch.equal(*normalized)
    cached.setup("predict"), uncached.setup("predict")
    assert torch.equal(all_batches(cached.predict_dataloader())["image"], all_batches(uncached.predict_dataloader())["image"])


# --- the decoded cache ---------------------------------------------------------------------------------


def test_cache_is_built_once_reused_and_rebuilt_when_the_files_change(data_dir, tmp_path, caplog):
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO)
    ready(data_dir, cache_dir=str(cache))
    images_file = cache / "train" / "images.npy"
    manifest = json.loads((cache / "train" / "manifest.json").read_text())
    assert manifest["images"] == CLASSES * TRAIN_PER_CLASS and manifest["bad_files"] == []
    built = images_file.stat().st_mtime_ns
    assert sum("Decoded" in message for message in caplog.messages) == 3  # train, val, test (prepare_data without a trainer: all splits)

    caplog.clear()
    reused = ready(data_dir, cache_dir=str(cache))
    assert images_file.stat().st_mtime_ns == built and not any("Decoded" in message for message in caplog.messages)

    # one training image replaced by a black one: the train cache (only) is rebuilt and serves the new pixels
    changed = data_dir / "tiny-imagenet-200" / "train" / "n09000000" / "images" / "n09000000_5.JPEG"
    Image.new("RGB", (64, 64)).save(changed, "JPEG")
    caplog.clear()
    rebuilt = ready(data_dir, cache_dir=str(cache))
    assert [message.split(" into ")[0] for message in caplog.messages if "Decoded" in message] == ["Decoded 60 Tiny-ImageNet train images"]
    position = [rebuilt.source("train", int(index)) for index in rebuilt.train_set.source_index].index(str(changed))
    assert rebuilt.train_set.images[position].max() < 5 and reused.train_set.images[position].max() > 200

    # a new image in val: rebuilt with one more row; a half-written cache (no manifest) is rebuilt too
    shutil.copy(data_dir / "tiny-imagenet-200" / "val" / "images" / "val_0.JPEG", data_dir / "tiny-imagenet-200" / "val" / "images" / "val_20.JPEG")
    with open(data_dir / "tiny-imagenet-200" / "val" / "val_annotations.txt", "a") as annotations:
        annotations.write("val_20.JPEG\tn09000137\t0\t0\t63\t63\n")
    (cache / "test" / "manifest.json").unlink()
    caplog.clear()
    module = ready(data_dir, cache_dir=str(cache))
    assert len(module.val_set) == CLASSES * VAL_PER_CLASS + 1 and int(module.val_set.labels[-1]) == 1
    assert sorted(message.split(" images into")[0] for message in caplog.messages if "Decoded" in message) == ["Decoded 10 Tiny-ImageNet test", "Decoded 21 Tiny-ImageNet val"]


# --- bad input -------------------------------------------------------------------------------------------


def _truncate(root: Path) -> str:
    path = root / "train" / "n09000000" / "images" / "n09000000_3.JPEG"
    path.write_bytes(path.read_bytes()[:700])
    return str(path)


def _corrupt(root: Path) -> str:
    path = root / "val" / "images" / "val_5.JPEG"
    path.write_bytes(b"this is not a JPEG file" * 20)
    return str(path)


def _unknown_class(root: Path) -> str:
    annotations = root / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(lines[2].split("\t")[1], "n99999999")
    annotations.write_text("".join(lines))
    return f"{annotations} line 3 names class 'n99999999'"


def _missing_annotations(root: Path) -> str:
    (root / "val" / "val_annotations.txt").unlink()
    return f"{root / 'val' / 'val_annotations.txt'} is missing"


def _empty_class(root: Path) -> str:
    folder = root / "train" / "n09000274" / "images"
    for path in folder.iterdir():
        path.unlink()
    return f"{folder} holds no JPEG images (class n09000274, line 3 of"


# (damage, named in the error, split, images of that split left when skipping (None: none at all))
BAD_INPUTS = {
    "truncated_jpeg": (_truncate, "train", CLASSES * TRAIN_PER_CLASS - 1),
    "corrupt_jpeg": (_corrupt, "val", CLASSES * VAL_PER_CLASS - 1),
    "unknown_class_in_annotations": (_unknown_class, "val", CLASSES * VAL_PER_CLASS - 1),
    "missing_annotation_file": (_missing_annotations, "val", None),
    "empty_class_folder": (_empty_class, "train", (CLASSES - 1) * TRAIN_PER_CLASS),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_stops_the_run_with_one_sentence_naming_the_file(case, data_dir, tmp_path):
    damage, _, _ = BAD_INPUTS[case]
    named = damage(data_dir / "tiny-imagenet-200")
    result = run_entry("train.py", *QUIET, f"data.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert named in line and "data.skip_bad_files=true" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_skip_bad_files_reports_each_once_and_counts_them(case, data_dir, caplog):
    damage, split, left = BAD_INPUTS[case]
    named = damage(data_dir / "tiny-imagenet-200")
    caplog.set_level(logging.WARNING)
    module = datamodule(data_dir, skip_bad_files=True)
    module.prepare_data()
    if left is None:
        with pytest.raises(UserError, match=f"The Tiny-ImageNet {split} split .* has no usable images"):
            module.setup("fit")
        return
    module.setup("fit")
    module.setup("test")  # val is not read (or reported) again
    assert sum(named in message for message in caplog.messages) == 1
    assert module.skipped[split] == 1 and len(getattr(module, f"{split}_set")) == left
    assert f"Bad inputs left out of the Tiny-ImageNet {split} split: 1; {left} images remain." in caplog.messages
    caplog.clear()
    again = datamodule(data_dir, skip_bad_files=True)  # a later run, reusing the cache, reports it again, once
    again.prepare_data(), again.setup("fit")
    assert sum(named in message for message in caplog.messages) == 1 and again.skipped[split] == 1


def test_a_reused_cache_still_refuses_the_bad_files_it_left_out(data_dir):
    named = _truncate(data_dir / "tiny-imagenet-200")
    ready(data_dir, skip_bad_files=True)  # builds the cache without the bad file
    with pytest.raises(UserError, match=named):
        ready(data_dir)


def test_uncached_path_names_a_bad_file_when_it_meets_it(data_dir, caplog):
    named = _truncate(data_dir / "tiny-imagenet-200")
    module = ready(data_dir, cache=False)
    with pytest.raises(UserError, match=f"{named} cannot be decoded"):
        all_batches(module.train_dataloader())
    skipping = ready(data_dir, cache=False, skip_bad_files=True)
    loader = skipping.train_dataloader()
    caplog.set_level(logging.WARNING)
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        assert len(all_batches(loader)["label"]) == CLASSES * TRAIN_PER_CLASS - 1
    assert sum(named in message for message in caplog.messages) == 1  # warned once, not every epoch


# --- download --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official_zip(pristine, tmp_path_factory) -> Path:
    """A zip of tiny-imagenet-200/ as the official one is laid out, in a folder served over HTTP by `server`."""
    folder = tmp_path_factory.mktemp("served")
    with zipfile.ZipFile(folder / "tiny-imagenet-200.zip", "w") as archive:
        for path in sorted((pristine / "tiny-imagenet-200").rglob("*")):
            archive.write(path, path.relative_to(pristine))
    return folder / "tiny-imagenet-200.zip"


@pytest.fixture(scope="module")
def server(official_zip):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(official_zip.parent))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


UNREACHABLE = "http://127.0.0.1:9/tiny-imagenet-200.zip"  # the discard port: nothing listens there


def test_download_verifies_and_extracts_the_zip(official_zip, server, tmp_path):
    module = TinyImageNetDataModule(str(tmp_path), url=f"{server}/tiny-imagenet-200.zip", md5=md5_of(official_zip), batch_size=8)
    module.prepare_data()
    module.setup("fit")
    assert len(module.train_set) == CLASSES * TRAIN_PER_CLASS and module.num_classes == CLASSES
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tiny-imagenet-200", "tiny-imagenet-200-decoded", "tiny-imagenet-200.zip"]


def test_download_with_the_wrong_checksum_is_refused_and_not_extracted(official_zip, server, tmp_path):
    module = TinyImageNetDataModule(str(tmp_path), url=f"{server}/tiny-imagenet-200.zip", md5="0" * 32, batch_size=8)
    with pytest.raises(UserError, match=f"to {tmp_path / 'tiny-imagenet-200.zip'} does not have the md5 checksum 0{{32}}"):
        module.prepare_data()
    assert not (tmp_path / "tiny-imagenet-200").exists()


def test_a_verified_zip_already_in_data_dir_is_extracted_offline(official_zip, tmp_path):
    shutil.copy(official_zip, tmp_path)
    module = TinyImageNetDataModule(str(tmp_path), url=UNREACHABLE, md5=md5_of(official_zip), batch_size=8)
    module.prepare_data()
    module.setup("validate")
    assert len(module.val_set) == CLASSES * VAL_PER_CLASS


def test_offline_and_absent_is_one_sentence_naming_the_folder_and_the_source(official_zip, tmp_path):
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(official_zip.read_bytes()[:1000])  # a cut-off earlier download
    module = TinyImageNetDataModule(str(tmp_path), url=UNREACHABLE, batch_size=8)
    with pytest.raises(UserError, match=f"Tiny-ImageNet is not in {tmp_path / 'tiny-imagenet-200'} .* could not be downloaded from {UNREACHABLE}"):
        module.prepare_data()
    result = run_entry("train.py", *QUIET, f"data.data_dir={tmp_path / 'nothing'}", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert str(tmp_path / "nothing" / "tiny-imagenet-200") in line and "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in line


# --- through the entry points ------------------------------------------------------------------------------


def test_train_and_eval_run_end_to_end(pristine, tmp_path):
    run = tmp_path / "run"
    overrides = [*QUIET, f"data.data_dir={pristine}", f"data.cache_dir={tmp_path / 'cache'}", "data.batch_size=16", "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    run_entry("train.py", *overrides, f"hydra.run.dir={run}")
    scalars = read_scalars(run / "tensorboard")
    assert len(scalars["val/top1"]) == 2 and scalars["val/top1"][-1][1] > 0.5  # 5 classes: chance is 0.2
    assert {"test/top1", "train/top5", "train_step/loss"} <= set(scalars)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "cache" / "train" / "manifest.json").is_file() and not (tmp_path / "cache" / "test").exists()  # predict only
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["run_config"]["data"]["_target_"] == "datamodules.tiny_imagenet.TinyImageNetDataModule"
    evaluated = tmp_path / "eval"
    run_entry("eval.py", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "splits=[val]", f"hydra.run.dir={evaluated}", "callbacks.progress_bar.refresh_rate=0")
    assert json.loads((evaluated / "metrics.json").read_text())["val/top1"] == pytest.approx(scalars["val/top1"][-1][1], abs=1e-6)


# --- the homework preset (needs model=resnet18, conf/model/resnet18.yaml) ----------------------------------


def test_resnet18_preset_is_the_documented_recipe(pristine, tmp_path):
    cfg = compose_config(["experiment=tiny_imagenet_resnet18", f"data.data_dir={pristine}", "data.download=false", f"data.cache_dir={tmp_path / 'cache'}"], tmp_path)
    assert cfg.data._target_ == "datamodules.tiny_imagenet.TinyImageNetDataModule" and cfg.model.small_input_stem is True
    assert (cfg.optimizer._target_, cfg.optimizer.nesterov, cfg.optimizer.momentum, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("torch.optim.SGD", True, 0.9, 0.1, 5e-4)
    assert cfg.data.batch_size == 256  # the batch lr 0.1 is meant for (linear scaling rule)
    assert cfg.scheduler.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR" and cfg.trainer.max_epochs == 100
    assert (cfg.data.augment.crop, cfg.data.augment.padding, cfg.data.augment.flip) == ("random", 4, True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    assert module(torch.zeros(2, 3, 64, 64)).shape == (2, CLASSES)


def test_an_unwritable_cache_folder_is_one_sentence(pristine, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match=r"Could not write the decoded Tiny-ImageNet train images in .*a_file/train .*set data.cache_dir to a writable folder"):
        ready(pristine, cache_dir=str(tmp_path / "a_file"))
