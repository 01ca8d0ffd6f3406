from pathlib import Path

import pytest

from datamodules.mnist import unpack_shipped_copy
from tests.helpers.idx_files import write_mnist


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A tiny MNIST in the official on-disk layout: 600 training and 200 test images."""
    return write_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def real_mnist_dir(tmp_path_factory) -> Path:
    """The real MNIST, unpacked from the copy shipped in the package."""
    folder = tmp_path_factory.mktemp("real_mnist")
    assert unpack_shipped_copy(folder / "MNIST" / "raw"), "the package ships no MNIST copy (datamodules/mnist_idx/)"
    return folder
