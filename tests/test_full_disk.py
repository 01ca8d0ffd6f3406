"""A full disk ends in one sentence naming the folder and leaves no partial file: MNIST unpacked from the shipped copy,
and the decoded Tiny-ImageNet cache (memory-mapped: without its blocks reserved first, a write into the map on a full
disk kills the process with SIGBUS). The full disk is a small tmpfs, which the tests (root, as CI) mount."""

from pathlib import Path

import pytest

from benchmarks.tiny_imagenet_files import write_tiny_imagenet
from tests.helpers.commands import TINY, run_entry
from tests.helpers.mounts import tmpfs


@pytest.fixture
def full_disk(tmp_path) -> Path:
    with tmpfs(tmp_path / "small_disk", "size=256k") as folder:
        yield folder


def test_mnist_unpacked_onto_a_full_disk_is_one_sentence_and_leaves_no_partial_file(full_disk, tmp_path):
    result = run_entry(
        "train.py",
        *[o for o in TINY if not o.startswith("data.download")],
        f"data.data_dir={full_disk}",
        f"paths.log_dir={tmp_path / 'logs'}",
        check=False,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert f"Could not write the MNIST files into {full_disk}/MNIST/raw (No space left on device)" in errors[0]
    assert not [path for path in full_disk.rglob("*") if path.is_file()]
    assert not (tmp_path / "logs").exists()


def test_the_tiny_imagenet_cache_on_a_full_disk_is_one_sentence_and_leaves_no_partial_file(full_disk, tmp_path):
    write_tiny_imagenet(tmp_path / "data", 5, 30, 4, 10)
    result = run_entry(
        "train.py",
        "trainer=cpu",
        "data=tiny_imagenet",
        "model=lenet",
        "data.download=false",
        f"data.data_dir={tmp_path / 'data'}",
        f"data.cache_dir={full_disk / 'cache'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        check=False,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert (
        f"Could not write the decoded Tiny-ImageNet train images in {full_disk}/cache/train (No space left on device)"
        in errors[0]
    )
    assert not [path for path in full_disk.rglob("*") if path.is_file()]


def test_an_empty_mnist_folder_on_a_read_only_disk_is_one_sentence(tmp_path):
    with tmpfs(tmp_path / "read_only", "ro,size=64k") as folder:
        result = run_entry(
            "train.py",
            *[o for o in TINY if not o.startswith("data.download")],
            f"data.data_dir={folder}",
            f"paths.log_dir={tmp_path / 'logs'}",
            check=False,
        )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert f"Could not write the MNIST files into {folder}/MNIST/raw (Read-only file system)" in errors[0]
    assert not (tmp_path / "logs").exists()
