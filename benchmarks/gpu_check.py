"""The open GPU questions (issue 23) in one command of about 8 minutes on one H100/H200, each section with its own time budget.

    python -m benchmarks.gpu_check --out DIR [--smoke] [--minutes 8] [--sections 1,2,3,4,5] [--wheels .gpu_wheels]

1. ResNet-18 at 64x64, 200 classes (the network of experiment=tiny_imagenet_resnet18), synthetic images in memory, a plain
   training loop: images/s in fp32, bf16 autocast, + channels_last, + torch.compile, and the best of these with the data
   kept on the device; batch 256 and 512. Training FLOPs per image (torch's FlopCounterMode, forward + backward) x images/s
   against the chip's datasheet peak.
2. The full path at Tiny-ImageNet scale: 100,000 + 10,000 (+ 10,000 test) generated 64x64 JPEGs in the official layout,
   the decoded cache built from them (images/s), then one epoch of train.py experiment=tiny_imagenet_resnet18 trainer=gpu
   (images/s, data-wait fraction and peak memory from the run's timing.csv), and the same with data.on_device=true.
3. train.py experiment=mnist_fast trainer=gpu: wall time of the whole command and test top-1, for as many seeds (up to 3)
   as the budget allows.
4. Per-step time of LeNet-5 at batch 128 on the device: a plain loop, the same steps in a bare Lightning Trainer (nothing
   logged; the loss logged; the loss logged to a progress bar redrawn every step, one host sync per step), and train.py.
5. The DDP strategy with trainer.devices=1 against the plain single device, on benchmarks/device_speed.py's workload, and
   device_speed's table (its CPU and GPU rows).

Each section runs in a process of its own, killed if it overruns its budget; what it measured until then is kept.
Results: one CSV per section and gpu_check.md (all tables, the machine and the software) under --out, the tables on
stdout too; the generated data and run directories go to a scratch folder, deleted at the end. --smoke runs every
section on the CPU in tiny sizes (torch.compile with its eager backend), for the tests. docs/gpu_check.md says how to
run it on the GPU machine.
"""

import argparse
import csv
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# share of the total time of each section (--minutes), in order
SECTIONS = {
    "1": ("resnet18_throughput", "ResNet-18 64x64 throughput, plain loop", 0.32),
    "2": ("tiny_imagenet_path", "Tiny-ImageNet full path: JPEGs, decoded cache, one epoch of train.py", 0.32),
    "3": ("mnist_fast", "experiment=mnist_fast", 0.10),
    "4": ("lenet_step_overhead", "Per-step time of LeNet-5, batch 128", 0.13),
    "5": ("ddp_one_device", "DDP with trainer.devices=1 against one device; device_speed", 0.13),
}
KILL_GRACE_S = 20  # after its budget a section is killed
PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "omegaconf", "numpy", "pillow")
# datasheet dense peaks (no sparsity), TFLOP/s, by torch.cuda.get_device_name: the first key found in the name wins
PEAK_TFLOPS = {
    "H200 NVL": {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100 NVL": {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "H100 PCIe": {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},  # SXM5 ("NVIDIA H100 80GB HBM3")
}
TINY_IMAGENET_SHAPE = (3, 64, 64)
TINY_IMAGENET_CLASSES = 200


# ---------------------------------------------------------------------------------------------- what a section reports


class Report:
    """What a section process reports, one JSON line at a time, so that a killed section keeps what it measured."""

    def __init__(self, path: Path, deadline: float, scratch: Path, smoke: bool):
        self.path, self.deadline, self.scratch, self.smoke = path, deadline, scratch, smoke
        self.started = time.time()
        self.scratch.mkdir(parents=True, exist_ok=True)

    def _send(self, **message) -> None:
        with self.path.open("a") as file:
            file.write(json.dumps(message) + "\n")

    def columns(self, *names: str) -> None:
        self._send(columns=list(names))

    def row(self, **values) -> None:
        self._send(row=values)

    def note(self, text: str) -> None:
        self._send(note=text)

    def left(self) -> float:
        return self.deadline - time.time()

    def log(self, message: str) -> None:
        print(f"[gpu_check +{time.time() - self.started:5.0f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Command:
    returncode: int | None  # None: stopped at its time limit
    wall_s: float
    log: Path

    def tail(self, lines: int = 8) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.is_file() else []
        return "\n".join(text[-lines:])


def run_command(arguments: list[str], log: Path, timeout: float, env: dict | None = None) -> Command:
    """Runs a command from the repo root, its output into `log`; stops it at `timeout` seconds."""
    started = time.perf_counter()
    with log.open("w") as output:
        process = subprocess.Popen(
            arguments, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            returncode = process.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            returncode = None
    return Command(returncode, time.perf_counter() - started, log)


def train_py(overrides: list[str], run_dir: Path, timeout: float) -> Command:
    return run_command(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"],
        run_dir.with_suffix(".log"),
        timeout,
        {"PYTHONUNBUFFERED": "1"},
    )


def failure(what: str, command: Command) -> str:
    why = "ran past the time left" if command.returncode is None else f"exited {command.returncode}"
    return f"{what} {why} after {command.wall_s:.0f} s; last lines:\n\n```\n{command.tail()}\n```"


def timing_rows(run_dir: Path) -> dict[str, dict[str, str]]:
    """callbacks/timing.py's rows of a run, by epoch ("0", "1", ..., "all")."""
    with (run_dir / "timing.csv").open(newline="") as file:
        return {row["epoch"]: row for row in csv.DictReader(file)}


def number(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


# ---------------------------------------------------------------------------------------------- 1. ResNet-18 throughput


@dataclass(frozen=True)
class Variant:
    name: str
    bf16: bool
    channels_last: bool
    compile: bool
    on_device: bool = False
    cudnn_benchmark: bool = False

    def with_data_on_device(self) -> "Variant":
        return Variant(f"{self.name} + data on device", self.bf16, self.channels_last, self.compile, True)

    def with_cudnn_benchmark(self) -> "Variant":
        return Variant(
            f"{self.name} + cudnn.benchmark", self.bf16, self.channels_last, self.compile, self.on_device, True
        )


def preset_network(image_shape: tuple[int, ...]):
    """A factory of the network of experiment=tiny_imagenet_resnet18, built from the composed config as train.py builds it, and its optimizer's settings."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=tiny_imagenet_resnet18"])
    return (
        lambda: instantiate(cfg.model, input_shape=list(image_shape), num_classes=TINY_IMAGENET_CLASSES)
    ), OmegaConf.to_container(cfg.optimizer)


def chip_peaks(device_name: str) -> tuple[str, dict[str, float]] | tuple[None, None]:
    for key, peaks in PEAK_TFLOPS.items():
        if key in device_name:
            return key, peaks
    return None, None


def training_flops_per_image(build, image_shape: tuple[int, ...]) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per image of the network in training mode, counted by torch on the CPU."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = build()
    images = torch.randn(2, *image_shape)
    with FlopCounterMode(display=False) as forward_counter:
        logits = net(images)
    with FlopCounterMode(display=False) as backward_counter:
        logits.sum().backward()
    forward = forward_counter.get_total_flops() / len(images)
    return forward, forward + backward_counter.get_total_flops() / len(images)


def matmul_tflops(device, size: int, repeats: int = 10) -> float:
    """bf16 (size x size) @ (size x size) on random data: the rate the chip reaches on its easiest work."""
    import torch

    a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_training(
    build, optimizer_options: dict, variant: Variant, batch_size: int, images_u8, labels, device, settings: dict
) -> dict:
    """Images/s of the training step (normalise, forward, loss, backward, SGD step) on batches cut from `images_u8`."""
    import torch
    from torch.nn import functional as F

    torch.backends.cudnn.benchmark = variant.cudnn_benchmark
    torch.manual_seed(0)
    net = build().to(device)
    memory_format = torch.channels_last if variant.channels_last else torch.contiguous_format
    net.to(memory_format=memory_format)
    if variant.compile:
        net.compile(dynamic=False, **settings["compile"])  # in place, as module.compile=true does
    options = {name: optimizer_options[name] for name in ("lr", "momentum", "weight_decay", "nesterov")}
    optimizer = torch.optim.SGD(net.parameters(), **options)
    # TinyImageNetDataModule's mean and std (not imported: the datamodule brings in Lightning)
    mean = torch.tensor([0.4802, 0.4481, 0.3975], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.2302, 0.2265, 0.2262], device=device).view(1, 3, 1, 1) * 255
    source_images, source_labels = (
        (images_u8.to(device), labels.to(device)) if variant.on_device else (images_u8, labels)
    )
    batches = len(images_u8) // batch_size
    order = torch.randperm(batches * batch_size, device=source_images.device).view(batches, batch_size)

    def step(index: int) -> None:
        positions = order[index % batches]
        images, targets = source_images[positions], source_labels[positions]
        if (
            device.type == "cuda" and not variant.on_device
        ):  # host batches: page-locked, copied while the device computes, as pin_memory does
            images, targets = (
                images.pin_memory().to(device, non_blocking=True),
                targets.pin_memory().to(device, non_blocking=True),
            )
        images = ((images.float() - mean) / std).contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.bf16):
            loss = F.cross_entropy(net(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for index in range(settings["warmup_steps"]):  # compiles, autotunes, fills the allocator's cache
        step(index)
    synchronize(device)
    warmup_s = time.perf_counter() - started
    steps, started = 0, time.perf_counter()
    while steps < settings["min_steps"] or time.perf_counter() - started < settings["seconds"]:
        for _ in range(settings["block"]):  # the host checks the clock once per block: no sync per step
            step(steps)
            steps += 1
        synchronize(device)
    elapsed = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    del net, optimizer, source_images, source_labels
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "images_per_s": steps * batch_size / elapsed,
        "step_ms": elapsed / steps * 1000,
        "warmup_s": warmup_s,
        "peak_memory_gb": peak,
    }


def section_resnet18(report: Report) -> None:
    import torch

    smoke = report.smoke
    device = torch.device("cpu" if smoke else "cuda")
    if not smoke and not torch.cuda.is_available():
        raise RuntimeError("no GPU that torch can use: run with --smoke on a machine without one")
    # smoke: 8x8 images (layer4 at 1x1), one batch size; bf16 convolutions on a CPU are slow
    image_shape = (3, 8, 8) if smoke else TINY_IMAGENET_SHAPE
    batch_sizes = (2,) if smoke else (256, 512)
    settings = {
        "warmup_steps": 1 if smoke else 15,
        "min_steps": 1 if smoke else 20,
        "seconds": 0.0 if smoke else 2.5,
        "block": 1 if smoke else 10,
        # smoke: dynamo traces the network, its eager backend runs it (inductor's code generation takes minutes on a CPU)
        "compile": {"backend": "eager"} if smoke else {},
    }
    build, optimizer_options = preset_network(image_shape)
    forward_flops, train_flops = training_flops_per_image(build, image_shape)
    device_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    )
    chip, peaks = chip_peaks(device_name) if device.type == "cuda" else (None, None)
    tf32_convolutions = torch.backends.cudnn.allow_tf32
    report.note(
        f"Device: {device_name}; torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; "
        f"images {list(image_shape)}, {TINY_IMAGENET_CLASSES} classes; network built from experiment=tiny_imagenet_resnet18 "
        f"(model.small_input_stem=true), SGD {optimizer_options}. "
        f"Training FLOPs per image (forward + backward, FlopCounterMode: convolutions and matrix products): {train_flops / 1e9:.2f} GFLOP "
        f"(forward {forward_flops / 1e9:.2f})."
    )
    if peaks:
        report.note(
            f"Datasheet peaks used for {chip} (dense): bf16 {peaks['bf16']} TFLOP/s; fp32 rows against TF32 {peaks['tf32']} TFLOP/s "
            f"since cuDNN convolutions may use TF32 (torch.backends.cudnn.allow_tf32={tf32_convolutions}); plain fp32 {peaks['fp32']}."
        )
    else:
        report.note(f"No datasheet peak for {device_name!r} in PEAK_TFLOPS: the fraction of peak is left empty.")
    size = 256 if smoke else 8192
    reference = matmul_tflops(device, size)
    report.note(
        f"bf16 {size}x{size}x{size} matrix product: {reference:.3g} TFLOP/s"
        + (f" ({reference / peaks['bf16']:.0%} of the datasheet bf16 peak)" if peaks else "")
        + "."
    )
    report.columns(
        "batch",
        "variant",
        "precision",
        "channels_last",
        "compile",
        "data",
        "images_per_s",
        "step_ms",
        "warmup_s",
        "peak_memory_gb",
        "tflops",
        "peak_tflops",
        "peak_frac",
    )

    count = max(4 * max(batch_sizes), 32 if smoke else 4096)
    generator = torch.Generator().manual_seed(0)
    images_u8 = torch.randint(0, 256, (count, *image_shape), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, TINY_IMAGENET_CLASSES, (count,), generator=generator)
    results: dict[tuple[int, Variant], float] = {}

    def measure(batch_size: int, variant: Variant, needs_s: float) -> dict | None:
        if report.left() < needs_s:
            report.row(
                batch=batch_size,
                variant=variant.name,
                data=f"skipped: {report.left():.0f} s left, about {needs_s:.0f} s needed",
            )
            return None
        report.log(f"ResNet-18 batch {batch_size}: {variant.name}")
        measured = measure_training(build, optimizer_options, variant, batch_size, images_u8, labels, device, settings)
        results[(batch_size, variant)] = measured["images_per_s"]
        peak = (
            (peaks["bf16"] if variant.bf16 else peaks["tf32" if tf32_convolutions else "fp32"]) if peaks else math.nan
        )
        tflops = train_flops * measured["images_per_s"] / 1e12
        report.row(
            batch=batch_size,
            variant=variant.name,
            precision="bf16 autocast" if variant.bf16 else "fp32",
            channels_last=variant.channels_last,
            compile=variant.compile,
            data="device" if variant.on_device else "host, pinned copy",
            **measured,
            tflops=tflops,
            peak_tflops=peak,
            peak_frac=tflops / peak,
        )
        return measured

    eager = [
        Variant("fp32", False, False, False),
        Variant("bf16", True, False, False),
        Variant("bf16 + channels_last", True, True, False),
    ]
    compiled = Variant("bf16 + channels_last + compile", True, True, True)
    eager_s, compile_s = (1, 5) if smoke else (8, 90)
    for batch_size in batch_sizes:
        for variant in eager:
            measure(batch_size, variant, eager_s)
    for batch_size in batch_sizes:
        best = max(
            (variant for variant in eager if (batch_size, variant) in results),
            key=lambda variant: results[(batch_size, variant)],
            default=None,
        )
        if best:
            measure(batch_size, best.with_data_on_device(), eager_s)
    for batch_size in batch_sizes:  # the first compilation's time is the estimate of the next one's
        measured = measure(batch_size, compiled, compile_s)
        compile_s = measured["warmup_s"] + 10 if measured else compile_s
    for batch_size in batch_sizes:
        if (batch_size, compiled) in results:
            measure(batch_size, compiled.with_data_on_device(), compile_s / 3)
    for batch_size in batch_sizes:  # Lightning leaves cudnn.benchmark off unless trainer.benchmark=true
        measured = {variant: rate for (size, variant), rate in results.items() if size == batch_size}
        if measured:
            measure(batch_size, max(measured, key=measured.get).with_cudnn_benchmark(), compile_s / 3)
    for batch_size in batch_sizes:
        measured = {variant: rate for (size, variant), rate in results.items() if size == batch_size}
        if measured:
            best = max(measured, key=measured.get)
            report.note(
                f"Best at batch {batch_size}: {best.name}, {measured[best]:,.0f} images/s ({train_flops * measured[best] / 1e12:.1f} TFLOP/s)."
            )


# ---------------------------------------------------------------------------------------------- 2. Tiny-ImageNet full path


def section_tiny_imagenet(report: Report) -> None:
    from benchmarks.tiny_imagenet_files import write_tiny_imagenet

    smoke = report.smoke
    workers = len(os.sched_getaffinity(0))
    train_per_class, val_per_class, test_count = (2, 1, 20) if smoke else (500, 50, 10_000)
    report.columns(
        "stage", "setting", "images", "seconds", "images_per_s", "data_wait_frac", "peak_memory_mb", "val_s", "wall_s"
    )

    # the generator's rate on one core, from a few images, decides how many fit in a third of the budget
    calibration = report.scratch / "calibration"
    started = time.perf_counter()
    write_tiny_imagenet(calibration, num_classes=1, train_per_class=100, val_per_class=0, test_count=0)
    rate = 100 / (time.perf_counter() - started) * workers * 0.8
    shutil.rmtree(calibration)
    planned = TINY_IMAGENET_CLASSES * (train_per_class + val_per_class) + test_count
    scale = min(1.0, report.left() / 3 * rate / planned)
    if scale < 1:
        train_per_class, val_per_class, test_count = (
            max(1, int(train_per_class * scale)),
            max(1, int(val_per_class * scale)),
            int(test_count * scale),
        )
        report.note(
            f"Scaled down to {scale:.0%} of the official size: {rate:.0f} images/s expected from {workers} processes."
        )
    images = TINY_IMAGENET_CLASSES * (train_per_class + val_per_class) + test_count
    data_dir, cache_dir = report.scratch / "data", report.scratch / "cache"
    report.log(f"writing {images} JPEGs with {workers} processes")
    started = time.perf_counter()
    write_tiny_imagenet(
        data_dir,
        num_classes=TINY_IMAGENET_CLASSES,
        train_per_class=train_per_class,
        val_per_class=val_per_class,
        test_count=test_count,
        workers=workers,
    )
    seconds = time.perf_counter() - started
    size_mb = sum(path.stat().st_size for path in data_dir.rglob("*.JPEG")) / 2**20
    report.row(
        stage="generate JPEGs",
        setting=f"{workers} processes, {size_mb:.0f} MB",
        images=images,
        seconds=seconds,
        images_per_s=images / seconds,
    )

    from datamodules.tiny_imagenet import TinyImageNetDataModule

    report.log("building the decoded cache")
    started = time.perf_counter()
    TinyImageNetDataModule(
        str(data_dir), download=False, cache_dir=str(cache_dir)
    ).prepare_data()  # no trainer: all three splits
    seconds = time.perf_counter() - started
    report.row(
        stage="decoded cache",
        setting=f"{workers} processes (datamodules/tiny_imagenet.py)",
        images=images,
        seconds=seconds,
        images_per_s=images / seconds,
    )

    base = [
        "experiment=tiny_imagenet_resnet18",
        f"data.data_dir={data_dir}",
        "data.download=false",
        f"data.cache_dir={cache_dir}",
        "trainer.max_epochs=1",
        "test=false",
    ]
    base += (
        [
            "trainer=cpu",
            "data.batch_size=4",
            "data.eval_batch_size=4",
            "++trainer.limit_train_batches=2",
            "++trainer.limit_val_batches=1",
            "++trainer.num_sanity_val_steps=0",
        ]
        if smoke
        else ["trainer=gpu"]
    )
    expected_s = 0.0
    settings = [("defaults (host batches, pinned)", []), ("data.on_device=true", ["data.on_device=true"])]
    for setting, overrides in settings[:1] if smoke else settings:  # data.on_device does nothing on a CPU
        if report.left() < expected_s:
            report.row(
                stage="one epoch of train.py",
                setting=f"{setting}: skipped, {report.left():.0f} s left, about {expected_s:.0f} s needed",
            )
            continue
        report.log(f"one epoch of train.py experiment=tiny_imagenet_resnet18, {setting}")
        run_dir = report.scratch / f"run-{len(overrides)}"
        command = train_py([*base, *overrides], run_dir, report.left())
        if command.returncode != 0:
            report.note(failure(f"train.py ({setting})", command))
            continue
        expected_s = command.wall_s * 1.1
        epoch = timing_rows(run_dir)["0"]
        report.row(
            stage="one epoch of train.py",
            setting=setting,
            images=int(epoch["samples"]),
            seconds=number(epoch["train_s"]),
            images_per_s=number(epoch["samples_per_s"]),
            data_wait_frac=number(epoch["data_wait_frac"]),
            peak_memory_mb=number(epoch["peak_memory_mb"]),
            val_s=number(epoch["val_s"]),
            wall_s=command.wall_s,
        )
    report.note(
        f"train.py {' '.join(base)} (+ the setting); seconds and images/s: the training steps and the data waits between them "
        "(timing.csv), validation apart; wall_s: the whole command, start-up, validation, checkpoints and figures included."
    )


# ---------------------------------------------------------------------------------------------- 3. mnist_fast


def section_mnist_fast(report: Report) -> None:
    smoke = report.smoke
    overrides = ["experiment=mnist_fast", f"paths.data_dir={report.scratch / 'data'}"]
    overrides += (
        [
            "trainer=cpu",
            "++trainer.limit_train_batches=3",
            "++trainer.limit_val_batches=1",
            "++trainer.limit_test_batches=1",
        ]
        if smoke
        else ["trainer=gpu"]
    )
    report.columns("seed", "wall_s", "test_top1", "train_samples_per_s", "data_wait_frac")
    report.note(
        f"train.py {' '.join(overrides)} seed=S; wall_s: the whole command (MNIST unpacked from the shipped copy in the first run); "
        "test top-1: the test predictions of the best checkpoint (predictions/test-*.csv)."
    )
    expected_s = 0.0
    for seed in range(1 if smoke else 3):
        if report.left() < expected_s:
            report.note(f"seed {seed} and later: skipped, {report.left():.0f} s left, about {expected_s:.0f} s needed")
            break
        report.log(f"train.py experiment=mnist_fast seed={seed}")
        run_dir = report.scratch / f"seed-{seed}"
        command = train_py([*overrides, f"seed={seed}"], run_dir, report.left())
        if command.returncode != 0:
            report.note(failure(f"mnist_fast seed={seed}", command))
            break
        expected_s = command.wall_s * 1.1
        predictions = sorted((run_dir / "predictions").glob("test-*.csv"))
        with predictions[-1].open(newline="") as file:
            correct = [int(row["correct"]) for row in csv.DictReader(file)]
        overall = timing_rows(run_dir)["all"]
        report.row(
            seed=seed,
            wall_s=command.wall_s,
            test_top1=sum(correct) / len(correct),
            train_samples_per_s=number(overall["samples_per_s"]),
            data_wait_frac=number(overall["data_wait_frac"]),
        )


# ---------------------------------------------------------------------------------------------- 4. LeNet per-step time


class OnDeviceBatches:
    """Shuffled batches cut from tensors already on the device, one per index (a DataLoader with batch_size=None serves them)."""

    def __init__(self, images, labels, batch_size: int, seed: int = 0):
        import torch

        self.images, self.labels, self.batch_size = images, labels, batch_size
        generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(images), generator=generator).to(images.device)

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def __getitem__(self, index: int):
        if index >= len(self):
            raise IndexError(index)
        positions = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.images[positions], self.labels[positions]


def lenet_step(net, optimizer, batch, device, bf16: bool):
    import torch
    from torch.nn import functional as F

    images, labels = batch
    images = (images.float() / 255 - 0.1307) / 0.3081
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(net(images), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def plain_loop_ms(loader, device, bf16: bool, warmup: int, steps: int, read_loss: bool) -> float:
    import torch

    from lightning_modules.nets.lenet import LeNet5

    torch.manual_seed(0)
    net = LeNet5((1, 28, 28), 10).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    step, started = 0, 0.0
    while step < warmup + steps:
        for batch in loader:
            if step == warmup:
                synchronize(device)
                started = time.perf_counter()
            loss = lenet_step(net, optimizer, batch, device, bf16)
            if read_loss:
                loss.item()  # one host sync per step
            step += 1
            if step == warmup + steps:
                break
    synchronize(device)
    return (time.perf_counter() - started) / steps * 1000


def lightning_ms(loader, device, bf16: bool, warmup: int, steps: int, log_loss: bool, progress_bar: bool) -> float:
    import contextlib
    import logging
    import warnings

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import TQDMProgressBar

    from lightning_modules.nets.lenet import LeNet5

    class StepClock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == warmup:
                synchronize(device)
                self.started = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            synchronize(device)
            self.ended = time.perf_counter()

    class Steps(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = LeNet5((1, 28, 28), 10)

        def training_step(self, batch, batch_idx):
            images, labels = batch
            images = (images.float() / 255 - 0.1307) / 0.3081
            loss = torch.nn.functional.cross_entropy(self.net(images), labels)
            if log_loss:
                self.log("loss", loss, prog_bar=progress_bar)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    clock = StepClock()
    callbacks = [clock, TQDMProgressBar(refresh_rate=1)] if progress_bar else [clock]
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        precision="bf16-mixed" if bf16 else "32-true",
        max_steps=warmup + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    with (
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
        contextlib.redirect_stderr(devnull),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        trainer.fit(Steps(), train_dataloaders=loader)
    return (clock.ended - clock.started) / steps * 1000


def section_lenet_overhead(report: Report) -> None:
    import torch
    from torch.utils.data import DataLoader

    smoke = report.smoke
    device = torch.device("cpu" if smoke else "cuda")
    bf16 = device.type == "cuda"
    warmup, steps = (2, 8) if smoke else (50, 1500)
    train_size = 2048 if smoke else 60_000
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (train_size, 1, 28, 28), dtype=torch.uint8, generator=generator).to(device)
    labels = torch.randint(0, 10, (train_size,), generator=generator).to(device)
    loader = DataLoader(OnDeviceBatches(images, labels, 128), batch_size=None, shuffle=False)
    report.columns("variant", "step_ms", "vs_plain", "host_syncs", "steps")
    report.note(
        f"LeNet-5 (1x28x28, 10 classes), batch 128, {'bf16 autocast' if bf16 else 'fp32'}, SGD with momentum, {train_size} random MNIST-shaped images "
        f"kept on the {device.type}, {steps} steps timed after {warmup}; the in-process variants share one DataLoader over those batches. "
        "train.py: LeNet on data=fake (MNIST-shaped, on the device), its default callbacks, logger and metrics; its step time is "
        "timing.csv's second epoch (training steps and the data waits between them) over its steps."
    )
    plain = math.nan
    variants: list[tuple[str, str, Callable[[], float]]] = [
        ("plain loop", "none", lambda: plain_loop_ms(loader, device, bf16, warmup, steps, read_loss=False)),
        (
            "plain loop + loss.item() every step",
            "1 per step",
            lambda: plain_loop_ms(loader, device, bf16, warmup, steps, read_loss=True),
        ),
        (
            "bare Lightning Trainer, nothing logged",
            "none",
            lambda: lightning_ms(loader, device, bf16, warmup, steps, log_loss=False, progress_bar=False),
        ),
        (
            "bare Lightning, self.log(loss), no progress bar",
            "none asked for",
            lambda: lightning_ms(loader, device, bf16, warmup, steps, log_loss=True, progress_bar=False),
        ),
        (
            "bare Lightning, self.log(loss, prog_bar=True), bar redrawn every step",
            "1 per step (bar)",
            lambda: lightning_ms(loader, device, bf16, warmup, steps, log_loss=True, progress_bar=True),
        ),
    ]
    for name, syncs, measure in variants:
        if report.left() < 10:
            report.row(variant=f"{name}: skipped, {report.left():.0f} s left")
            continue
        report.log(f"LeNet steps: {name}")
        step_ms = measure()
        plain = step_ms if name == "plain loop" else plain
        report.row(variant=name, step_ms=step_ms, vs_plain=step_ms / plain, host_syncs=syncs, steps=steps)

    batches_per_epoch = 16 if smoke else 469
    fake = [
        "data=fake",
        "data.input_shape=[1,28,28]",
        "data.num_classes=10",
        f"data.train_size={batches_per_epoch * 128}",
        "data.val_size=1000" if not smoke else "data.val_size=128",
        "data.batch_size=128",
        "model=lenet",
        "trainer.max_epochs=2",
        "test=false",
        "trainer=cpu" if smoke else "trainer=gpu",
    ]
    train_variants = [
        ("train.py (its defaults: progress bar redrawn every 20 steps)", []),
        ("train.py, callbacks.progress_bar.refresh_rate=0", ["callbacks.progress_bar.refresh_rate=0"]),
    ]
    for name, extra in train_variants[:1] if smoke else train_variants:  # smoke: one train.py start-up is enough
        if report.left() < 20:
            report.row(variant=f"{name}: skipped, {report.left():.0f} s left")
            continue
        report.log(f"LeNet steps: {name}")
        run_dir = report.scratch / f"train-{len(extra)}"
        command = train_py([*fake, *extra], run_dir, report.left())
        if command.returncode != 0:
            report.note(failure(name, command))
            continue
        epoch = timing_rows(run_dir)["1"]
        epoch_steps = int(epoch["samples"]) // 128
        step_ms = number(epoch["train_s"]) / epoch_steps * 1000
        report.row(variant=name, step_ms=step_ms, vs_plain=step_ms / plain, host_syncs="train.py's", steps=epoch_steps)
    report.note(f"train.py {' '.join(fake)}")


# ---------------------------------------------------------------------------------------------- 5. DDP on one device


def section_ddp(report: Report) -> None:
    from benchmarks import device_speed
    from benchmarks.runs import paired_ratio

    smoke = report.smoke
    overrides = list(device_speed.DEFAULTS)
    if smoke:
        overrides += ["data.train_size=512", "data.val_size=128"]
    single = device_speed.settings_of(["cpu" if smoke else "gpu"])[0]
    if smoke:
        ddp = device_speed.Setting(
            "ddp_1", "DDP strategy, 1 process (CPU, gloo)", "cpu", ["trainer=ddp_cpu", "trainer.devices=1"], 1
        )
    else:  # trainer=ddp keeps the default 32-true: bf16-mixed as in trainer=gpu, so that only the strategy differs
        ddp = device_speed.Setting(
            "ddp_1",
            "DDP strategy, 1 GPU",
            "gpu",
            ["trainer=ddp", "trainer.devices=1", "trainer.precision=bf16-mixed"],
            1,
        )
    cpu = device_speed.settings_of(["cpu"])[0]
    report.columns("setting", "runs", "samples_per_s", "epoch_s", "wall_s", "vs_single_device")
    report.note(
        f"train.py {' '.join(overrides)} + the setting's overrides (benchmarks/device_speed.py's workload); samples/s from timing.csv, "
        "all epochs; runs alternate (ABBA) while the budget lasts; vs_single_device: median of the paired ratios of samples/s."
    )

    def run(setting, repeat: int) -> bool:
        expected = statistics.median(setting.wall_s) * 1.1 if setting.wall_s else 0.0
        if report.left() < max(expected, 5):
            return False
        report.log(f"device_speed setting {setting.name}, run {repeat}")
        try:
            device_speed.run(setting, overrides, report.scratch / f"{setting.name}-{repeat}")
        except SystemExit as error:  # device_speed's failure message
            report.note(f"{setting.description} failed: {str(error)[-1500:]}")
            return False
        return True

    pairs = 0
    for repeat in range(1 if smoke else 4):
        order = (single, ddp) if repeat % 2 == 0 else (ddp, single)
        if not all(run(setting, repeat) for setting in order):
            break
        pairs += 1
        if repeat == 0 and not smoke:  # the CPU row of device_speed's table, for its speed-up column
            run(cpu, 0)
    for setting in (single, ddp):
        if setting.samples_per_s:
            runs = len(setting.samples_per_s)
            ratio = paired_ratio(setting.samples_per_s[:pairs], single.samples_per_s[:pairs]) if pairs else math.nan
            report.row(
                setting=setting.description,
                runs=runs,
                samples_per_s=statistics.median(setting.samples_per_s),
                epoch_s=statistics.median(setting.epoch_s),
                wall_s=statistics.median(setting.wall_s),
                vs_single_device=ratio,
            )
    measured = [setting for setting in (cpu, single) if setting.samples_per_s]
    if measured:
        report.note("benchmarks/device_speed.py's table:\n\n" + device_speed.table(measured, overrides))


SECTION_FUNCTIONS: dict[str, Callable[[Report], None]] = {
    "1": section_resnet18,
    "2": section_tiny_imagenet,
    "3": section_mnist_fast,
    "4": section_lenet_overhead,
    "5": section_ddp,
}


# ---------------------------------------------------------------------------------------------- the whole check


@dataclass
class SectionResult:
    key: str
    columns: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    budget_s: float = 0.0
    seconds: float = 0.0
    ending: str = ""


def run_section(key: str, budget_s: float, scratch: Path, smoke: bool) -> SectionResult:
    """The section in a process of its own (its own process group, so that an overrun kills its train.py runs too)."""
    rows_path = scratch / f"section{key}.jsonl"
    rows_path.unlink(missing_ok=True)
    started = time.time()
    arguments = [
        sys.executable,
        "-m",
        "benchmarks.gpu_check",
        "--section",
        key,
        "--rows",
        str(rows_path),
        "--deadline",
        str(started + budget_s),
        "--scratch",
        str(scratch / f"section{key}"),
    ]
    process = subprocess.Popen(
        [*arguments, *(["--smoke"] if smoke else [])], cwd=REPO, stdout=sys.stderr, start_new_session=True
    )
    try:
        returncode = process.wait(timeout=budget_s + KILL_GRACE_S)
        ending = "" if returncode == 0 else f"The section's process exited {returncode} (its error is in the log)."
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        ending = f"The section ran past its budget of {budget_s:.0f} s and was stopped: the rows above are what it measured until then."
    result = SectionResult(key, budget_s=budget_s, seconds=time.time() - started, ending=ending)
    for line in rows_path.read_text().splitlines() if rows_path.is_file() else []:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed section
            continue
        if "columns" in message:
            result.columns = message["columns"]
        elif "row" in message:
            result.rows.append(message["row"])
        else:
            result.notes.append(message["note"])
    return result


def cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if column.endswith("_frac"):
            return f"{value:.1%}"
        if column.startswith("vs_"):
            return f"{value:.3f}x"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def markdown(result: SectionResult) -> str:
    name, title, _ = SECTIONS[result.key]
    lines = [
        f"## {result.key}. {title}",
        "",
        f"Section time {result.seconds:.0f} s of a budget of {result.budget_s:.0f} s; `section{result.key}_{name}.csv`.",
        "",
    ]
    if result.columns:
        lines += ["| " + " | ".join(result.columns) + " |", "|" + " --- |" * len(result.columns)]
        lines += [
            "| " + " | ".join(cell(column, row.get(column)) for column in result.columns) + " |" for row in result.rows
        ]
        lines.append("")
    for note in result.notes + ([result.ending] if result.ending else []):
        lines += [note, ""]
    return "\n".join(lines)


def write_csv(result: SectionResult, path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, result.columns or ["note"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows({column: csv_value(value) for column, value in row.items()} for row in result.rows)


def csv_value(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def machine_header(smoke: bool, started: datetime.datetime) -> str:
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} (absent)")
    gpu = "no nvidia-smi"
    if shutil.which("nvidia-smi"):
        query = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        gpu = query.stdout.strip() or query.stderr.strip()
    return "\n".join(
        [
            f"# GPU check{' (smoke run on the CPU: tiny sizes, not figures)' if smoke else ''}",
            "",
            f"`python -m benchmarks.gpu_check {' '.join(sys.argv[1:])}`, started {started.isoformat(timespec='seconds')}",
            "",
            f"Machine: {platform.node()}, {len(os.sched_getaffinity(0))} CPU cores, GPU: {gpu}; Python {platform.python_version()}; {', '.join(versions)}.",
            "",
        ]
    )


def install_wheels(folder: Path, target: Path) -> None:
    """Offline, the wheels of the packages this Python lacks (benchmarks/gpu_wheels.sh fetched them), for this process and its children."""
    missing = [module for module in ("hydra", "omegaconf", "antlr4") if importlib.util.find_spec(module) is None]
    if not missing:
        print(f"--wheels: {', '.join(('hydra', 'omegaconf', 'antlr4'))} are installed already", file=sys.stderr)
        return
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(
            f"error: {', '.join(missing)} missing and no wheels in {folder}: run `bash benchmarks/gpu_wheels.sh` where the registry is reachable, and carry {folder}."
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--target",
            str(target),
            *map(str, wheels),
        ],
        check=True,
    )
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])
    print(f"--wheels: installed {', '.join(wheel.name for wheel in wheels)} into {target}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="where the tables go: one CSV per section and gpu_check.md")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every section on the CPU in tiny sizes (seconds each): the same code, not figures",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        help="the time of all sections together, shared among them as in SECTIONS (default 8; 30 with --smoke, which should never need it)",
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated section numbers")
    parser.add_argument(
        "--scratch",
        type=Path,
        help="where the generated data and run directories go (default: a temporary folder, deleted at the end)",
    )
    parser.add_argument(
        "--wheels",
        type=Path,
        help="a folder of wheels to install offline first if hydra/omegaconf are missing (benchmarks/gpu_wheels.sh)",
    )
    parser.add_argument("--section", help=argparse.SUPPRESS)  # one section, in its own process: what the check runs
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.section:
        report = Report(args.rows, args.deadline, args.scratch, args.smoke)
        try:
            SECTION_FUNCTIONS[args.section](report)
        except Exception as error:
            traceback.print_exc()
            report.note(f"The section failed: {type(error).__name__}: {error}"[:2000])
            sys.exit(1)
        return

    if args.out is None:
        parser.error("--out DIR is required")
    keys = [key.strip() for key in args.sections.split(",") if key.strip()]
    unknown = [key for key in keys if key not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}: choose from {', '.join(SECTIONS)}")
    started = datetime.datetime.now()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        if args.wheels:
            install_wheels(args.wheels, scratch / "site-packages")
        header = machine_header(args.smoke, started)
        print(header, flush=True)
        parts = [header]
        total_s = (args.minutes or (30 if args.smoke else 8)) * 60
        for key in keys:
            name, title, share = SECTIONS[key]
            print(f"[gpu_check] section {key}: {title} (budget {share * total_s:.0f} s)", file=sys.stderr, flush=True)
            result = run_section(key, share * total_s, scratch, args.smoke)
            write_csv(result, args.out / f"section{key}_{name}.csv")
            parts.append(markdown(result))
            (args.out / "gpu_check.md").write_text("\n".join(parts))
            print(parts[-1], flush=True)
        elapsed = (datetime.datetime.now() - started).total_seconds()
        parts.append(f"All sections: {elapsed:.0f} s.\n")
        (args.out / "gpu_check.md").write_text("\n".join(parts))
        print(parts[-1], flush=True)
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
