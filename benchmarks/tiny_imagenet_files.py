"""Writes a Tiny-ImageNet in the official tiny-imagenet-200 layout, from a few images for the tests to the full
100,000 + 10,000 + 10,000 for the benchmarks (tiny_imagenet_input, gpu_check).

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

The images are written in tasks (one class of train/, or a chunk of val/ or test/), each with a random
generator of its own seeded by (seed, task): the files are the same whether the tasks run in one process
or in `workers` processes.
"""

import multiprocessing
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
BAND_HEIGHT = 6
BAND_STRIDE = 9  # 7 distinct bands fit in 64 rows; classes beyond that repeat them
CHUNK = 500  # val/ and test/ images per task


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


def _write_images(task: tuple) -> list[str]:
    """One task: the images (folder/prefix<i>.JPEG of class classes[i]) and their box annotation lines."""
    seed, number, folder, prefix, first, classes, first_position, grayscale_every, with_wnid = task
    rng = np.random.default_rng([seed, number])
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for offset, k in enumerate(classes):
        name = f"{prefix}{first + offset}.JPEG"
        grayscale = (first_position + offset) % grayscale_every == grayscale_every - 1
        synthetic_image(int(k), rng, grayscale).save(folder / name, "JPEG", quality=90)
        lines.append("\t".join([name, wnid(int(k)), _box(rng)] if with_wnid else [name, _box(rng)]) + "\n")
    return lines


def write_tiny_imagenet(
    data_dir: Path,
    num_classes: int = 5,
    train_per_class: int = 12,
    val_per_class: int = 4,
    test_count: int = 10,
    grayscale_every: int = 7,
    seed: int = 0,
    workers: int = 1,
) -> Path:
    """data_dir/tiny-imagenet-200 in the official layout, written by `workers` processes; returns that folder."""
    rng = np.random.default_rng([seed])
    root = Path(data_dir) / "tiny-imagenet-200"
    wnids = [wnid(k) for k in range(num_classes)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{name}\n" for name in wnids))
    # words.txt covers all of ImageNet's synsets, not only the 200 classes: a few others here too
    others = [f"n{8_000_000 + k:08d}\tother synset {k}\n" for k in range(3)]
    words = [f"{name}\tsynthetic class {k}, band {k % 7}\n" for k, name in enumerate(wnids)]
    (root / "words.txt").write_text("".join(others[:2] + words + others[2:]))

    # the position of each image in the order train (class by class), val, test decides which are grey
    val_classes = rng.permutation(np.repeat(np.arange(num_classes), val_per_class))
    test_classes = rng.integers(num_classes, size=test_count)
    val_start, test_start = num_classes * train_per_class, num_classes * train_per_class + len(val_classes)
    train_tasks = [
        (root / "train" / name / "images", f"{name}_", 0, [k] * train_per_class, k * train_per_class, False)
        for k, name in enumerate(wnids)
    ]
    val_tasks = [
        (root / "val" / "images", "val_", i, val_classes[i : i + CHUNK], val_start + i, True)
        for i in range(0, len(val_classes), CHUNK)
    ]
    test_tasks = [
        (root / "test" / "images", "test_", i, test_classes[i : i + CHUNK], test_start + i, False)
        for i in range(0, test_count, CHUNK)
    ]
    tasks = [
        (seed, number, folder, prefix, first, classes, position, grayscale_every, with_wnid)
        for number, (folder, prefix, first, classes, position, with_wnid) in enumerate(
            train_tasks + val_tasks + test_tasks
        )
    ]
    if workers > 1:
        with multiprocessing.get_context().Pool(workers) as pool:
            annotations = pool.map(_write_images, tasks, chunksize=1)
    else:
        annotations = [_write_images(task) for task in tasks]

    for name, lines in zip(wnids, annotations):
        (root / "train" / name / f"{name}_boxes.txt").write_text("".join(lines))
    if val_tasks:
        (root / "val" / "val_annotations.txt").write_text(
            "".join(
                line for lines in annotations[len(train_tasks) : len(train_tasks) + len(val_tasks)] for line in lines
            )
        )
    return root


def sort_val_into_class_folders(root: Path, images_level: bool = True) -> None:
    """Rearrange val/ as the usual tutorial preparation scripts do: val/<wnid>/images/<file> (or val/<wnid>/<file>
    with `images_level=False`), moved by val_annotations.txt, val/images/ removed, the annotation file left."""
    val = Path(root) / "val"
    for line in (val / "val_annotations.txt").read_text().splitlines():
        name, class_id = line.split("\t")[:2]
        target = val / class_id / "images" if images_level else val / class_id
        target.mkdir(parents=True, exist_ok=True)
        (val / "images" / name).rename(target / name)
    (val / "images").rmdir()
