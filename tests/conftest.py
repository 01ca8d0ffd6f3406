import os
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.mnist import unpack_shipped_copy
from tests.idx_files import write_mnist

REPO = Path(__file__).resolve().parents[1]


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


# Small and fast: a few batches, no progress bar, CPU.
TINY = [
    "trainer=cpu",
    "trainer.max_epochs=2",
    "data.batch_size=32",
    "data.val_size=100",
    "data.download=false",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.log_every_n_steps=5",
]


def run_entry(script: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs an entry script of the repo as a user would, from the repo root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run(
        [sys.executable, script, *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(overrides)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def files_left(*folders: Path) -> set[str]:
    """Every folder and file below `folders`, and the repo's top level (where run_entry starts a command and Hydra
    would put its outputs/): what a command created shows as the difference of two calls."""
    found = {str(path) for path in REPO.iterdir()}
    for folder in folders:
        found |= {str(path) for path in [folder, *folder.rglob("*")]}
    return found
