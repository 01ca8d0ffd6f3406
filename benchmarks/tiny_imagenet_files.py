"""Writes a small Tiny-ImageNet in the official tiny-imagenet-200 layout, for the tests and the input benchmark.

    tiny-imagenet-200/wnids.txt                      one wnid per line: the classes, in class-index order
    tiny-imagenet-200/words.txt                      wnid<TAB>names, for these and for other synsets
    tiny-imagenet-200/train/<wnid>/images/<wnid>_<i>.JPEG
    tiny-imagenet-200/train/<wnid>/<wnid>_boxes.txt  file<TAB>x0<TAB>y0<TAB>x1<TAB>y1
    tiny-imagenet-200/val/images/val_<i>.JPEG
    tiny-imagenet-200/val/val_annotations.txt        file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1
    tiny-imagenet-200/test/images/test_<i>.JPEG      no labels

Images are 64x64 JPEGs; every `grayscale_every`-th one is single-channel, as some official ones are.
Class k is drawn as a bright horizontal band at rows `band_rows(k)` on a smooth random background,
so a test can tell an image's class from its pixels (`class_from_pixels`).
"""

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
BAND_HEIGHT = 6
BAND_STRIDE = 9  # 7 distinct bands fit in 64 rows; classes beyond that repeat them


def wnid(k: int) -> str:
    return f"n{9_000_000 + 137 * k:08d}"


def band_rows(k: int) -> slice:
    top = 2 + BAND_STRIDE * (k % 7)
    return slice(top, top + BAND_HEIGHT)


def class_from_pixels(image: np.ndarray) -> int:
    """The band index (class modulo 7) of a decoded (C, H, W) image: the brightest band of rows."""
    row_brightness = image.astype(np.float64).mean(axis=(0, 2))
    return int(np.argmax([row_brightness[band_rows(k)].mean() for k in range(7)]))


def synthetic_image(k: int, rng: np.random.Generator, grayscale: bool) -> Image.Image:
    """A smooth random background (like a photo, it compresses to a few kB) with class k's band."""
    coarse = rng.integers(20, 150, size=(8, 8, 3), dtype=np.uint8)
    background = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.BICUBIC), dtype=np.int16)
    pixels = background + rng.integers(-12, 13, size=(SIZE, SIZE, 3))
    pixels[band_rows(k)] = 245
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.convert("L") if grayscale else image


def _box(rng: np.random.Generator) -> str:
    x0, y0 = rng.integers(0, 30, size=2)
    x1, y1 = rng.integers(34, SIZE, size=2)
    return f"{x0}\t{y0}\t{x1}\t{y1}"


def write_tiny_imagenet(
    data_dir: Path,
    num_classes: int = 5,
    train_per_class: int = 12,
    val_per_class: int = 4,
    test_count: int = 10,
    grayscale_every: int = 7,
    seed: int = 0,
) -> Path:
    """data_dir/tiny-imagenet-200 in the official layout; returns that folder."""
    rng = np.random.default_rng(seed)
    root = Path(data_dir) / "tiny-imagenet-200"
    wnids = [wnid(k) for k in range(num_classes)]
    written = 0

    def save(path: Path, k: int) -> None:
        nonlocal written
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_image(k, rng, grayscale=written % grayscale_every == grayscale_every - 1).save(path, "JPEG", quality=90)
        written += 1

    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{name}\n" for name in wnids))
    # words.txt covers all of ImageNet's synsets, not only the 200 classes: a few others here too
    others = [f"n{8_000_000 + k:08d}\tother synset {k}\n" for k in range(3)]
    words = [f"{name}\tsynthetic class {k}, band {k % 7}\n" for k, name in enumerate(wnids)]
    (root / "words.txt").write_text("".join(others[:2] + words + others[2:]))

    for k, name in enumerate(wnids):
        class_dir = root / "train" / name
        boxes = []
        for i in range(train_per_class):
            save(class_dir / "images" / f"{name}_{i}.JPEG", k)
            boxes.append(f"{name}_{i}.JPEG\t{_box(rng)}\n")
        (class_dir / f"{name}_boxes.txt").write_text("".join(boxes))

    val_classes = rng.permutation(np.repeat(np.arange(num_classes), val_per_class))
    annotations = []
    for i, k in enumerate(val_classes):
        save(root / "val" / "images" / f"val_{i}.JPEG", int(k))
        annotations.append(f"val_{i}.JPEG\t{wnids[k]}\t{_box(rng)}\n")
    (root / "val" / "val_annotations.txt").write_text("".join(annotations))

    for i in range(test_count):
        save(root / "test" / "images" / f"test_{i}.JPEG", int(rng.integers(num_classes)))
    return root
