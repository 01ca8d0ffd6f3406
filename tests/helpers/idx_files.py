"""Writes IDX files in the official uncompressed layout of MNIST, FashionMNIST or KMNIST, with a learnable synthetic task."""

import struct
from pathlib import Path

import numpy as np

IMAGE_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
LABEL_FILES = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3: magic 0x00000803, then count, rows, cols as big-endian int32, then the pixels."""
    path.write_bytes(struct.pack(">IIII", 0x803, *images.shape) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1: magic 0x00000801, then count, then one byte per label."""
    path.write_bytes(struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes())


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose class k is a bright bar at a class-specific place, on noise: learnable in an epoch."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(count, 28, 28))
    for image, label in zip(images, labels):
        row = 3 + 2 * label
        image[row : row + 2, 4:24] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_idx_dataset(
    root: Path, torchvision_dataset: str = "MNIST", train_count: int = 600, test_count: int = 200
) -> Path:
    """root/<class>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, as torchvision's MNIST, FashionMNIST and
    KMNIST(root) read them."""
    raw = root / torchvision_dataset / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", train_count, 0), ("test", test_count, 1)):
        images, labels = synthetic_digits(count, seed)
        write_idx_images(raw / IMAGE_FILES[split], images)
        write_idx_labels(raw / LABEL_FILES[split], labels)
    return root


def write_mnist(root: Path, train_count: int = 600, test_count: int = 200) -> Path:
    return write_idx_dataset(root, "MNIST", train_count, test_count)
