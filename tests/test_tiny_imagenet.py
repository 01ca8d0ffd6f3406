"""Tiny-ImageNet on a small dataset generated in the official tiny-imagenet-200 layout."""

import functools
import hashlib
import http.server
import json
import logging
import os
import re
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from benchmarks.tiny_imagenet_files import class_from_pixels, sort_val_into_class_folders, write_tiny_imagenet
from datamodules.image_files import BadImageFile, decode_image
from datamodules.tiny_imagenet import TinyImageNetDataModule, TinyImageNetFolder
from runs.build import build_datamodule, build_module
from tests.helpers.commands import fresh_copy, run_entry, run_in_shell
from tests.helpers.compose import compose_config
from tests.helpers.tensorboard_events import read_scalars
from user_errors import UserError

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, TEST_COUNT = 5, 12, 4, 10
QUIET = [
    "trainer=cpu",
    "data=tiny_imagenet",
    "model=lenet",
    "data.download=false",
    "callbacks.progress_bar.refresh_rate=0",
]


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
    grayscale = [
        path
        for path in sorted((pristine / "tiny-imagenet-200" / "train").rglob("*.JPEG"))
        if Image.open(path).mode == "L"
    ]
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
    assert torch.equal(
        all_batches(cached.predict_dataloader())["image"], all_batches(uncached.predict_dataloader())["image"]
    )


# --- the decoded cache ---------------------------------------------------------------------------------


def test_cache_is_built_once_reused_and_rebuilt_when_the_files_change(data_dir, tmp_path, caplog):
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO)
    ready(data_dir, cache_dir=str(cache))
    images_file = cache / "train" / "images.npy"
    manifest = json.loads((cache / "train" / "manifest.json").read_text())
    assert manifest["images"] == CLASSES * TRAIN_PER_CLASS and manifest["bad_files"] == []
    built = images_file.stat().st_mtime_ns
    assert (
        sum("Decoded" in message for message in caplog.messages) == 3
    )  # train, val, test (prepare_data without a trainer: all splits)

    caplog.clear()
    reused = ready(data_dir, cache_dir=str(cache))
    assert images_file.stat().st_mtime_ns == built and not any("Decoded" in message for message in caplog.messages)

    # one training image replaced by a black one: the train cache (only) is rebuilt and serves the new pixels
    changed = data_dir / "tiny-imagenet-200" / "train" / "n09000000" / "images" / "n09000000_5.JPEG"
    Image.new("RGB", (64, 64)).save(changed, "JPEG")
    caplog.clear()
    rebuilt = ready(data_dir, cache_dir=str(cache))
    assert [message.split(" into ")[0] for message in caplog.messages if "Decoded" in message] == [
        "Decoded 60 Tiny-ImageNet train images"
    ]
    position = [rebuilt.source("train", int(index)) for index in rebuilt.train_set.source_index].index(str(changed))
    assert rebuilt.train_set.images[position].max() < 5 and reused.train_set.images[position].max() > 200

    # a new image in val: rebuilt with one more row; a half-written cache (no manifest) is rebuilt too
    shutil.copy(
        data_dir / "tiny-imagenet-200" / "val" / "images" / "val_0.JPEG",
        data_dir / "tiny-imagenet-200" / "val" / "images" / "val_20.JPEG",
    )
    with open(data_dir / "tiny-imagenet-200" / "val" / "val_annotations.txt", "a") as annotations:
        annotations.write("val_20.JPEG\tn09000137\t0\t0\t63\t63\n")
    (cache / "test" / "manifest.json").unlink()
    caplog.clear()
    module = ready(data_dir, cache_dir=str(cache))
    assert len(module.val_set) == CLASSES * VAL_PER_CLASS + 1 and int(module.val_set.labels[-1]) == 1
    assert sorted(message.split(" images into")[0] for message in caplog.messages if "Decoded" in message) == [
        "Decoded 10 Tiny-ImageNet test",
        "Decoded 21 Tiny-ImageNet val",
    ]


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
    return f"{annotations} line 3 ({lines[2].rstrip()!r}) does not label a file of {root / 'val' / 'images'} once with a class of wnids.txt"


def _empty_class(root: Path) -> str:
    folder = root / "train" / "n09000274" / "images"
    for path in folder.iterdir():
        path.unlink()
    return f"{folder} holds no JPEG images (class n09000274, line 3 of"


def _broken_link(root: Path) -> str:
    link = root / "train" / "n09000000" / "images" / "n09000000_99.JPEG"
    link.symlink_to(root / "train" / "n09000000" / "images" / "moved_away.JPEG")
    return f"{link} is not a readable image file (missing, or a broken link)"


def _folder_named_jpeg(root: Path) -> str:
    folder = root / "val" / "images" / "val_99.JPEG"
    folder.mkdir()
    return f"{folder} is not a readable image file (a folder)"


def _fifo_named_jpeg(root: Path) -> str:  # unreadable: the tests run as root, whom chmod 000 does not stop
    fifo = root / "train" / "n09000137" / "images" / "n09000137_99.JPEG"
    os.mkfifo(fifo)
    return f"{fifo} is not a readable image file (a FIFO, or unreadable)"


# (damage, named in the error, split, images of that split left when skipping)
BAD_INPUTS = {
    "truncated_jpeg": (_truncate, "train", CLASSES * TRAIN_PER_CLASS - 1),
    "corrupt_jpeg": (_corrupt, "val", CLASSES * VAL_PER_CLASS - 1),
    "unknown_class_in_annotations": (_unknown_class, "val", CLASSES * VAL_PER_CLASS - 1),
    "empty_class_folder": (_empty_class, "train", (CLASSES - 1) * TRAIN_PER_CLASS),
    "broken_symlink": (_broken_link, "train", CLASSES * TRAIN_PER_CLASS),
    "folder_named_jpeg": (_folder_named_jpeg, "val", CLASSES * VAL_PER_CLASS),
    "fifo_named_jpeg": (_fifo_named_jpeg, "train", CLASSES * TRAIN_PER_CLASS),
}


@pytest.mark.parametrize(
    "case",
    [case if case == "corrupt_jpeg" else pytest.param(case, marks=pytest.mark.slow) for case in BAD_INPUTS],
)
def test_bad_input_stops_the_run_with_one_sentence_naming_the_file(case, data_dir, tmp_path):
    damage, _, _ = BAD_INPUTS[case]
    named = damage(data_dir / "tiny-imagenet-200")
    result = run_entry(
        "train.py", *QUIET, f"data.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'run'}", check=False
    )
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
    module.setup("fit")
    module.setup("test")  # val is not read (or reported) again
    assert sum(named in message for message in caplog.messages) == 1
    assert len(getattr(module, f"{split}_set")) == left
    counted = f"Bad inputs left out of the Tiny-ImageNet {split} split: 1; {left} images remain."
    assert counted in caplog.messages
    caplog.clear()
    again = datamodule(data_dir, skip_bad_files=True)  # a later run, reusing the cache, reports it again, once
    again.prepare_data(), again.setup("fit")
    assert sum(named in message for message in caplog.messages) == 1 and counted in caplog.messages


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
    module = TinyImageNetDataModule(
        str(tmp_path), url=f"{server}/tiny-imagenet-200.zip", md5=md5_of(official_zip), batch_size=8
    )
    module.prepare_data()
    module.setup("fit")
    assert len(module.train_set) == CLASSES * TRAIN_PER_CLASS and module.num_classes == CLASSES
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "tiny-imagenet-200",
        "tiny-imagenet-200-decoded",
        "tiny-imagenet-200.zip",
    ]


def test_download_with_the_wrong_checksum_is_refused_and_not_extracted(official_zip, server, tmp_path):
    module = TinyImageNetDataModule(str(tmp_path), url=f"{server}/tiny-imagenet-200.zip", md5="0" * 32, batch_size=8)
    with pytest.raises(
        UserError, match=f"to {tmp_path / 'tiny-imagenet-200.zip'} with the md5 checksum 0{{32}} and unzipped"
    ):
        module.prepare_data()
    assert not (tmp_path / "tiny-imagenet-200").exists()


def test_a_verified_zip_already_in_data_dir_is_extracted_offline(official_zip, tmp_path):
    shutil.copy(official_zip, tmp_path)
    module = TinyImageNetDataModule(str(tmp_path), url=UNREACHABLE, md5=md5_of(official_zip), batch_size=8)
    module.prepare_data()
    module.setup("validate")
    assert len(module.val_set) == CLASSES * VAL_PER_CLASS


@pytest.mark.slow
def test_offline_and_absent_is_one_sentence_naming_the_folder_and_the_source(official_zip, tmp_path):
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(official_zip.read_bytes()[:1000])  # a cut-off earlier download
    module = TinyImageNetDataModule(str(tmp_path), url=UNREACHABLE, batch_size=8)
    with pytest.raises(
        UserError,
        match=f"Tiny-ImageNet is not in {tmp_path / 'tiny-imagenet-200'} .* could not be downloaded from {UNREACHABLE}",
    ):
        module.prepare_data()
    result = run_entry(
        "train.py", *QUIET, f"data.data_dir={tmp_path / 'nothing'}", f"hydra.run.dir={tmp_path / 'run'}", check=False
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert (
        str(tmp_path / "nothing" / "tiny-imagenet-200") in line
        and "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in line
    )


# --- through the entry points ------------------------------------------------------------------------------


def test_train_and_eval_run_end_to_end(pristine, tmp_path):
    run = tmp_path / "run"
    overrides = [
        *QUIET,
        f"data.data_dir={pristine}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
    ]
    run_entry("train.py", *overrides, f"hydra.run.dir={run}")
    scalars = read_scalars(run / "tensorboard")
    assert len(scalars["val/top1"]) == 2 and scalars["val/top1"][-1][1] > 0.5  # 5 classes: chance is 0.2
    assert {"test/top1", "train/top5", "train_step/loss"} <= set(scalars)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "cache" / "train" / "manifest.json").is_file() and not (
        tmp_path / "cache" / "test"
    ).exists()  # predict only
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["experiment"]["choices"]["data"] == "tiny_imagenet"
    evaluated = tmp_path / "eval"
    run_entry(
        "eval.py",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        "data=tiny_imagenet",  # its own keys (cache_dir) are given on the command line, so its option too
        f"data.data_dir={pristine}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "splits=[val]",
        f"hydra.run.dir={evaluated}",
        "callbacks.progress_bar.refresh_rate=0",
    )
    assert json.loads((evaluated / "metrics.json").read_text())["val/top1"] == pytest.approx(
        scalars["val/top1"][-1][1], abs=1e-6
    )


# --- the homework preset (needs model=resnet18, conf/model/resnet18.yaml) ----------------------------------


def test_resnet18_preset_is_the_documented_recipe(pristine, tmp_path):
    cfg = compose_config(
        [
            "experiment=tiny_imagenet_resnet18",
            f"data.data_dir={pristine}",
            "data.download=false",
            f"data.cache_dir={tmp_path / 'cache'}",
        ],
        tmp_path,
    )
    assert (
        cfg.data._target_ == "datamodules.tiny_imagenet.TinyImageNetDataModule" and cfg.model.small_input_stem is True
    )
    assert (
        cfg.optimizer._target_,
        cfg.optimizer.nesterov,
        cfg.optimizer.momentum,
        cfg.optimizer.lr,
        cfg.optimizer.weight_decay,
    ) == ("torch.optim.SGD", True, 0.9, 0.1, 5e-4)
    assert cfg.data.batch_size == 256  # the batch lr 0.1 is meant for (linear scaling rule)
    assert (
        cfg.scheduler.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR"
        and cfg.trainer.max_epochs == 100
    )
    assert (cfg.data.augment.crop, cfg.data.augment.padding, cfg.data.augment.flip) == ("random", 4, True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    assert module(torch.zeros(2, 3, 64, 64)).shape == (2, CLASSES)


def test_an_unwritable_cache_folder_is_one_sentence(pristine, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(
        UserError,
        match=r"Could not write the decoded Tiny-ImageNet train images in .*a_file/train .*set data.cache_dir to a writable folder",
    ):
        ready(pristine, cache_dir=str(tmp_path / "a_file"))


def test_a_split_left_with_no_images_still_stops_the_run(data_dir):
    for path in (data_dir / "tiny-imagenet-200" / "val" / "images").iterdir():
        path.write_bytes(b"not a JPEG")
    with pytest.raises(UserError, match="The Tiny-ImageNet val split .* has no usable images"):
        datamodule(data_dir, skip_bad_files=True).prepare_data()  # refused as it is loaded, before any training


# --- files as they come: text encodings, odd files, image modes --------------------------------------------


def _error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def train_run(data_dir: Path, tmp_path: Path, *overrides: str):
    """train.py on data_dir, one short epoch, its decoded cache in tmp_path/cache; the completed process."""
    return run_entry(
        "train.py",
        *QUIET,
        f"data.data_dir={data_dir}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "trainer.max_epochs=1",
        "data.batch_size=16",
        *overrides,
        check=False,
    )


# (file, line 3 rewritten with a Latin-1 byte in it)
NOT_UTF8 = {
    "wnids.txt": "wnids.txt",
    "words.txt": "words.txt",
    "val_annotations.txt": "val/val_annotations.txt",
}


@pytest.mark.parametrize(
    "name", [name if name == "wnids.txt" else pytest.param(name, marks=pytest.mark.slow) for name in NOT_UTF8]
)
def test_a_text_file_that_is_not_utf8_is_one_sentence_naming_it(name, data_dir, tmp_path):
    path = data_dir / "tiny-imagenet-200" / NOT_UTF8[name]
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2] + " caf\u00e9".encode("latin-1")  # as an editor saving in Windows-1252 writes it
    path.write_bytes(b"\n".join(lines))
    line = _error_line(train_run(data_dir, tmp_path))
    assert f"{path} is not UTF-8 text" in line and "save it as UTF-8" in line
    assert "skip_bad_files" not in line and not (tmp_path / "cache").exists()  # refused before any decoding


def _add_bom(path: Path) -> None:
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


@pytest.mark.slow
def test_a_byte_order_mark_never_shows_in_a_path_or_message(data_dir, tmp_path):
    root = data_dir / "tiny-imagenet-200"
    _add_bom(root / "wnids.txt")
    first_class = root / "train" / "n09000000" / "images"  # named on wnids.txt line 1, after the mark
    for path in first_class.iterdir():
        path.unlink()
    result = train_run(data_dir, tmp_path)
    line = _error_line(result)
    assert f"{first_class} holds no JPEG images (class n09000000, line 1 of {root / 'wnids.txt'})" in line
    assert "\ufeff" not in result.stderr + result.stdout


def _sixteen_bit_png_as_jpeg(root: Path) -> tuple[Path, np.ndarray]:
    """A training image of class 2 replaced by a 16-bit grayscale PNG named .JPEG; the 8-bit pixels it stands for."""
    path = root / "train" / "n09000274" / "images" / "n09000274_0.JPEG"
    eight_bit = np.asarray(Image.open(path).convert("L"), dtype=np.int64)
    noise = np.random.default_rng(1).integers(-128, 129, size=eight_bit.shape)  # the low byte: rounds away
    sixteen_bit = np.clip(eight_bit * 257 + noise, 0, 65535).astype(np.uint16)
    Image.fromarray(sixteen_bit).save(path, "PNG")
    assert Image.open(path).mode == "I;16"
    return path, np.round(sixteen_bit / 257).astype(np.uint8)


@pytest.mark.slow
def test_files_as_they_come_train_with_bad_files_skipped_and_counted(data_dir, tmp_path):
    """Byte order marks in all three text files, a 16-bit PNG named .JPEG, a broken link, a FIFO and a folder named .JPEG."""
    root = data_dir / "tiny-imagenet-200"
    for name in ("wnids.txt", "words.txt", "val/val_annotations.txt"):
        _add_bom(root / name)
    sixteen_bit, expected = _sixteen_bit_png_as_jpeg(root)
    named = [_broken_link(root), _fifo_named_jpeg(root), _folder_named_jpeg(root)]

    refused = _error_line(train_run(data_dir, tmp_path))
    assert (
        named[0] in refused and "1 more bad inputs in the train split" in refused and not (tmp_path / "cache").exists()
    )

    result = train_run(data_dir, tmp_path, "data.skip_bad_files=true")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "val/ is in the official layout" in output and "\ufeff" not in output
    assert all(sum(name in line for line in output.splitlines()) == 1 for name in named)  # each reported once
    assert (
        f"Bad inputs left out of the Tiny-ImageNet train split: 2; {CLASSES * TRAIN_PER_CLASS} images remain." in output
    )
    assert f"Bad inputs left out of the Tiny-ImageNet val split: 1; {CLASSES * VAL_PER_CLASS} images remain." in output

    # the 16-bit image is scaled to 8 bits, not clipped at 255 (PIL's plain convert made 99% of it white)
    images, kept = (
        np.load(tmp_path / "cache" / "train" / "images.npy"),
        json.loads((tmp_path / "cache" / "train" / "manifest.json").read_text())["kept"],
    )
    files = TinyImageNetFolder(root).list_split("train").files
    decoded = images[kept.index(files.index(sixteen_bit))]
    assert all(np.array_equal(channel, expected) for channel in decoded)
    assert (decoded == 255).mean() < 0.01 and class_from_pixels(decoded) == 2
    assert TinyImageNetFolder(root).class_names == [
        f"synthetic class {k}" for k in range(CLASSES)
    ]  # words.txt line 1 too


def test_image_modes_are_brought_to_rgb_over_their_full_range(tmp_path):
    shape = (3, 64, 64)
    gradient = np.tile(np.arange(64, dtype=np.int64) * 1040, (64, 1))  # 0..65520

    def saved(image: Image.Image, name: str) -> np.ndarray:
        image.save(tmp_path / name)
        return decode_image(tmp_path / name, shape)

    sixteen = saved(Image.fromarray(gradient.astype(np.uint16)), "gray16.png")
    assert np.array_equal(sixteen[0], np.round(gradient / 257)) and np.array_equal(sixteen[0], sixteen[2])
    in_mode_i = saved(Image.fromarray(gradient.astype(np.int32)), "gray32.tif")
    assert np.array_equal(in_mode_i, sixteen)

    cmyk = saved(Image.new("CMYK", (64, 64), (100, 20, 0, 50)), "cmyk.jpg")
    want = [round((255 - ink) * (255 - 50) / 255) for ink in (100, 20, 0)]
    assert np.abs(cmyk[:, 32, 32].astype(int) - want).max() <= 3  # (1-C)(1-K), JPEG rounding

    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 10, 10)
    rgba[:32, :, 3] = 255  # top half opaque red; bottom half transparent, its stored red hidden
    flattened = saved(Image.fromarray(rgba), "rgba.png")
    assert flattened[:, 0, 0].tolist() == [200, 10, 10] and flattened[:, 63, 0].tolist() == [255, 255, 255]
    half = rgba.copy()
    half[..., 3] = 128
    over_white = [round((value * 128 + 255 * 127) / 255) for value in (200, 10, 10)]
    assert np.abs(saved(Image.fromarray(half), "half.png")[:, 0, 0].astype(int) - over_white).max() <= 1

    la = Image.fromarray(np.stack([np.full((64, 64), 90, np.uint8), rgba[..., 3]], axis=-1), "LA")
    assert saved(la, "la.png")[:, [0, 63], 0].tolist() == [[90, 255]] * 3

    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    palette.paste(0, (0, 32, 64, 64))
    palette.info["transparency"] = 0  # palette entry 0 (the bottom half) is transparent
    assert saved(palette, "palette.png")[:, [0, 63], 0].T.tolist() == [[30, 60, 90], [255, 255, 255]]

    for image, name, why in [
        (
            Image.fromarray(np.full((64, 64), 70000, np.int32)),
            "gray32_wide.tif",
            "holds mode I pixels (70000..70000) of unknown full scale",
        ),
        (Image.fromarray(np.full((64, 64), 0.5, np.float32)), "float.tif", "holds mode F pixels (0.5..0.5)"),
    ]:
        image.save(tmp_path / name)
        with pytest.raises(BadImageFile, match=re.escape(f"{tmp_path / name} cannot be decoded as an image ({why}")):
            decode_image(tmp_path / name, shape)


# --- the layouts of val/ -------------------------------------------------------------------------------------


@pytest.mark.parametrize("images_level", [True, False], ids=["val-wnid-images", "val-wnid"])
def test_val_sorted_into_class_folders_gives_the_same_labelled_images(images_level, pristine, data_dir, tmp_path):
    official = ready(pristine, stage="validate", cache_dir=str(tmp_path / "official"))
    sort_val_into_class_folders(data_dir / "tiny-imagenet-200", images_level)
    module = ready(data_dir, stage="validate", cache_dir=str(tmp_path / "sorted"))
    assert module.folder.val_layout == "class folders"

    def by_name(module) -> dict[str, tuple[int, bytes]]:
        val = all_batches(module.val_dataloader())
        return {
            Path(module.source("val", index)).name: (label, image.numpy().tobytes())
            for index, label, image in zip(val["index"].tolist(), val["label"].tolist(), val["image"])
        }

    assert by_name(module) == by_name(official) and len(by_name(module)) == CLASSES * VAL_PER_CLASS


def test_train_reads_val_sorted_into_class_folders_and_says_so(data_dir, tmp_path):
    sort_val_into_class_folders(data_dir / "tiny-imagenet-200")
    result = train_run(data_dir, tmp_path, "trainer.log_every_n_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val/ is in the class folders layout; val_annotations.txt is not used" in result.stdout + result.stderr
    assert len(read_scalars(tmp_path / "run" / "tensorboard")["val/top1"]) == 1
    assert json.loads((tmp_path / "cache" / "val" / "manifest.json").read_text())["images"] == CLASSES * VAL_PER_CLASS


def _val_flat(root: Path) -> None:
    for path in (root / "val" / "images").iterdir():
        path.rename(root / "val" / path.name)
    (root / "val" / "images").rmdir()


def _val_half_sorted(root: Path) -> None:
    sort_val_into_class_folders(root)
    (root / "val" / "images").mkdir()
    for path in (root / "val" / "n09000000" / "images").iterdir():
        path.rename(root / "val" / "images" / path.name)


def _val_class_folder_renamed(root: Path) -> None:
    sort_val_into_class_folders(root)
    (root / "val" / "n09000137").rename(root / "val" / "goldfish")


def _train_folder_not_in_wnids(root: Path) -> None:
    shutil.copytree(root / "train" / "n09000000", root / "train" / "n01443537")


# (rearrangement, named in the error)
UNKNOWN_LAYOUTS = {
    "val_images_without_annotations": (
        lambda root: (root / "val" / "val_annotations.txt").unlink(),
        "val is in no layout this reader knows (it holds images/)",
    ),
    "val_images_directly_in_val": (
        _val_flat,
        f"(it holds val_0.JPEG, val_1.JPEG, val_10.JPEG and {CLASSES * VAL_PER_CLASS - 2} more)",
    ),
    "val_half_sorted": (
        _val_half_sorted,
        "(it holds images/, val_annotations.txt, n09000000/ and 4 more)",
    ),
    "val_folder_not_a_class": (
        _val_class_folder_renamed,
        "(it holds goldfish/, val_annotations.txt, n09000000/ and 3 more)",
    ),
    "val_missing": (lambda root: shutil.rmtree(root / "val"), "val is in no layout this reader knows (it is missing)"),
    "train_folder_not_in_wnids": (
        _train_folder_not_in_wnids,
        "train is in no layout this reader knows (it holds n01443537/, n09000000/",
    ),
    "test_missing": (
        lambda root: shutil.rmtree(root / "test"),
        "test is in no layout this reader knows (it is missing)",
    ),
}


THROUGH_TRAIN_PY = ("val_half_sorted",)  # the rest are slow there, quick in-process below


@pytest.mark.parametrize(
    "case",
    [case if case in THROUGH_TRAIN_PY else pytest.param(case, marks=pytest.mark.slow) for case in UNKNOWN_LAYOUTS],
)
def test_a_layout_it_does_not_know_is_refused_before_decoding_anything(case, data_dir, tmp_path):
    rearrange, named = UNKNOWN_LAYOUTS[case]
    rearrange(data_dir / "tiny-imagenet-200")
    line = _error_line(train_run(data_dir, tmp_path))
    assert named in line, line
    if case.startswith("val"):
        assert (
            "val/images/*.JPEG labelled by val/val_annotations.txt (the official zip), or val/<wnid>/images/*.JPEG or val/<wnid>/*.JPEG"
            in line
        )
    assert "skip_bad_files" not in line  # skipping files cannot mend a layout
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("case", UNKNOWN_LAYOUTS)
def test_every_unknown_layout_is_refused_by_the_datamodule_before_decoding(case, data_dir, tmp_path):
    rearrange, named = UNKNOWN_LAYOUTS[case]
    rearrange(data_dir / "tiny-imagenet-200")
    with pytest.raises(UserError, match=re.escape(named)) as refused:
        datamodule(
            data_dir, cache_dir=str(tmp_path / "cache"), skip_bad_files=True
        ).prepare_data()  # skipping does not help
    assert "skip_bad_files" not in str(refused.value) and not (tmp_path / "cache").exists()


def test_the_cpu_recipe_as_typed_trains_resnet18_with_the_imagenet_stem(pristine, tmp_path):
    """`python train.py experiment=tiny_imagenet_resnet18_cpu` in a fresh clone whose data/ holds the dataset."""
    checkout = fresh_copy(tmp_path / "classic-dl")
    shutil.copytree(pristine / "tiny-imagenet-200", checkout / "data" / "tiny-imagenet-200")
    result = run_in_shell("python train.py experiment=tiny_imagenet_resnet18_cpu debug=limit", checkout, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (checkout / "logs" / "train" / "runs").iterdir()
    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert config.model.small_input_stem is False and config.model.arch == "resnet18"
    assert (config.data.batch_size, config.optimizer.lr, config.trainer.accelerator) == (128, 0.05, "cpu")
    maxpool = next(line for line in (run / "layers.txt").read_text().splitlines() if "model.maxpool " in line)
    assert "[2, 64, 16, 16]" in maxpool  # the ImageNet stem: 64x64 images are 16x16 after it (two example images)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(read_scalars(run / "tensorboard")["val/top1"]) == 2
