"""Images per second delivered to the training step by two Tiny-ImageNet input pipelines, on the same data and cores.

(a) the usual per-image pipeline: torchvision ImageFolder over train/, PIL decode, RandomCrop(64, padding=4),
    RandomHorizontalFlip, ToTensor, Normalize, default collate;
(b) this project's: the decoded cache (memory-mapped uint8), one read per batch, then the same crop, flip and
    normalisation on the whole batch (TinyImageNetDataModule + BatchAugment, as in training on this device).

Both deliver normalised float batches of random crops and flips; each is timed over whole epochs (at least
--seconds) after a warm-up epoch, alternately, and the median of the repeats is reported with the ratio (b)/(a). With
--workers 0 (the default) and --threads 1 everything runs in one process on one core: per-core figures.

    python -m benchmarks.tiny_imagenet_input [--train-images 5000] [--workers 0] [--threads 1] [--repeats 3] [--seconds 2]

The data are generated in the official layout (benchmarks/tiny_imagenet_files.py) unless --data-dir names a
folder holding tiny-imagenet-200/.
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from benchmarks.tiny_imagenet_files import write_tiny_imagenet
from datamodules.batch_augment import BatchAugment
from datamodules.tiny_imagenet import TinyImageNetDataModule

CLASSES = 200


def per_image_loader(data_dir: Path, batch_size: int, workers: int) -> DataLoader:
    augment = transforms.Compose(
        [
            transforms.RandomCrop(64, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(TinyImageNetDataModule.mean, TinyImageNetDataModule.std),
        ]
    )
    train = datasets.ImageFolder(str(data_dir / "tiny-imagenet-200" / "train"), transform=augment)
    return DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=workers > 0)


def epoch_per_image(loader: DataLoader) -> int:
    images = 0
    for batch, _ in loader:
        images += len(batch)
    return images


def cached_datamodule(data_dir: Path, cache_dir: Path, batch_size: int, workers: int) -> TinyImageNetDataModule:
    datamodule = TinyImageNetDataModule(
        str(data_dir),
        download=False,
        cache_dir=str(cache_dir),
        batch_size=batch_size,
        num_workers=workers,
        augment=BatchAugment(crop="random", padding=4, flip=True),
    )
    started = time.perf_counter()
    datamodule.prepare_data()  # without a trainer: decodes all three splits
    seconds = time.perf_counter() - started
    datamodule.setup()
    decoded = len(datamodule.train_set) + len(datamodule.val_set) + len(datamodule.predict_set)
    print(
        f"decoded cache built: {decoded} images in {seconds:.1f} s, {decoded / seconds:.0f} images/s on {len(os.sched_getaffinity(0))} cores (once)"
    )
    # a stand-in trainer: training batches are augmented (on_after_batch_transfer), one process, on the CPU
    datamodule.trainer = SimpleNamespace(
        training=True, distributed_sampler_kwargs=None, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )
    return datamodule


def epoch_cached(datamodule: TinyImageNetDataModule, loader: DataLoader) -> int:
    images = 0
    for batch in loader:
        images += len(datamodule.on_after_batch_transfer(batch, 0)["image"])
    return images


def images_per_second(run_epoch, seconds: float) -> float:
    """Whole epochs, as many as fit in `seconds` (at least one): short runs of the fast pipeline would be noisy."""
    started = time.perf_counter()
    images = 0
    while not images or time.perf_counter() - started < seconds:
        images += run_epoch()
    return images / (time.perf_counter() - started)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    models = (
        [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        if cpuinfo.is_file()
        else []
    )
    return f"{models[0] if models else platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores usable"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=5000, help="generated training images (200 classes)")
    parser.add_argument("--data-dir", type=Path, help="a folder holding tiny-imagenet-200/ instead of generated data")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for both pipelines")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the main process")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum time of each measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = Path(scratch)
            write_tiny_imagenet(
                data_dir,
                num_classes=CLASSES,
                train_per_class=max(1, args.train_images // CLASSES),
                val_per_class=1,
                test_count=10,
            )
        datamodule = cached_datamodule(data_dir, Path(scratch) / "cache", args.batch_size, args.workers)
        cached_loader = datamodule.train_dataloader()
        per_image = per_image_loader(data_dir, args.batch_size, args.workers)
        pipelines = {
            "(a) ImageFolder + PIL transforms, per image": lambda: epoch_per_image(per_image),
            "(b) decoded cache + batch augmentation": lambda: epoch_cached(datamodule, cached_loader),
        }
        for run_epoch in pipelines.values():  # warm-up: page cache, worker start, first-call overheads
            run_epoch()
        rates = {name: [] for name in pipelines}
        for _ in range(args.repeats):  # alternately, so that a change in the machine's load hits both
            for name, run_epoch in pipelines.items():
                rates[name].append(images_per_second(run_epoch, args.seconds))

    processes = (
        "one process: per-core figures"
        if args.workers == 0 and args.threads == 1
        else f"main process with {args.threads} threads + {args.workers} loader workers"
    )
    print(f"\n{len(datamodule.train_set)} training images of 64x64, batch {args.batch_size}, {processes}; {machine()}")
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        print(f"{name:48s} {medians[name]:9.0f} images/s  (runs: {', '.join(f'{v:.0f}' for v in values)})")
    baseline, ours = medians.values()
    print(f"ratio (b)/(a): {ours / baseline:.1f}x")


if __name__ == "__main__":
    main()
