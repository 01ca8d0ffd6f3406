"""What the framework costs per training step: train.py with its default callbacks, logger and progress bar
against a plain hand-written PyTorch loop doing the same work and, to tell Lightning's share from ours, the
plain loop's steps run by a bare Lightning Trainer.

    python -m benchmarks.overhead [--steps 500] [--first-step 20] [--repeats 3] [--threads 1] [--data-dir data] [train.py overrides ...]

The variants train LeNet-5 (lightning_modules/nets/lenet.py, conf/model/lenet.yaml's options) on the real MNIST,
from the same seed, on the same tensors in the same order (MNISTDataModule's split, EpochShuffleSampler's
batches), batch 128, SGD with momentum and the cosine schedule of the default config (stepped at every step),
the batches normalised by the datamodule; all validate on the 5000 validation images at the end of every whole
epoch (not where the step limit ends training mid-epoch: Lightning does not) and keep the epoch's loss, top-1 and
top-5 accuracy (training and validation) on the device, read once per epoch.
- plain: a hand-written loop (plain_loop below).
- lightning: the plain loop's steps in a LightningModule (PlainLoopModule below), fed the same batches through
  a plain DataLoader, run by a Trainer with no logger, callbacks, checkpoints, progress bar or model summary,
  and nothing logged: Lightning's own cost, the floor for anything built on its loop.
- train.py: our LightningModule and DataModule and everything train.py always does besides: checkpoints,
  TensorBoard, timing.csv, prediction files, figures, the progress bar.

Each run is a fresh process on the CPU; the order of the variants turns around at every repeat (ABC CBA ...)
so that a drift in the machine's load hits all alike. Per-step time is measured inside each process, from the start of step --first-step (start-up,
the first steps' warm-up excluded) to the end of step --steps, so it includes the epoch ends (validation,
checkpoints, files, figures) that fall in between; whole-process time is measured from outside. The medians
and ratios (to the plain loop, and to the lightning variant) are printed with the machine's load average,
and the medians of the paired ratios (each repeat's variant against the same repeat's baseline), which a
drift between repeats does not move.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from benchmarks.runs import (
    REPO,
    StepTimer,
    alternating,
    load,
    paired_ratio,
    per_step_seconds,
    step_timer_overrides,
    synchronize,
    timed_run,
    train_py_overrides,
)
from datamodules.base import EpochShuffleSampler, already_collated
from datamodules.mnist import MNISTDataModule
from lightning_modules.nets.lenet import LeNet5

VARIANTS = ("plain", "lightning", "train.py")
BATCH_SIZE = 128
VAL_BATCH_SIZE = 1000  # data.eval_batch_size of conf/data/mnist.yaml


def plain_loop(data_dir: str, steps: int, first_step: int, seed: int, max_epochs: int, marks_path: Path) -> None:
    """The hand-written loop, in this process; writes the same marks as benchmarks/runs.py's StepTimer."""
    L.seed_everything(seed)  # as train.py: the datamodule draws its shuffle seed, then the network its weights
    datamodule = MNISTDataModule(data_dir, download=False, batch_size=BATCH_SIZE)
    net = LeNet5(MNISTDataModule.input_shape, MNISTDataModule.num_classes)
    datamodule.setup("fit")
    device = torch.device("cpu")
    train, val = datamodule.train_set, datamodule.val_set
    optimizer, scheduler = sgd_with_cosine_schedule(net, steps, max_epochs, len(train))
    marks: dict[str, float] = {}
    sampler, step, epoch = EpochShuffleSampler(len(train), datamodule.shuffle_seed, BATCH_SIZE), 0, 0
    while step < steps:
        sampler.set_epoch(epoch)
        net.train()
        loss_sum, correct = torch.zeros((), device=device), torch.zeros(2, device=device, dtype=torch.long)
        for positions in sampler:
            if step == first_step:
                synchronize(device)
                marks["start"] = time.time()
            batch = train.__getitems__(positions)
            images, labels = datamodule.normalize(batch["image"].to(device)), batch["label"].to(device)
            logits = net(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(labels)
            correct += top1_top5_hits(logits.detach(), labels)
            step += 1
            if step == steps:
                break
        else:  # a whole epoch: Lightning validates at epoch ends, not where max_steps stops it mid-epoch
            print(
                epoch_report(epoch, (loss_sum, correct, len(train)), evaluate(net, datamodule, val, device)), flush=True
            )
        epoch += 1
    synchronize(device)
    marks["end"] = time.time()
    marks["steps"] = steps - first_step
    marks_path.write_text(json.dumps(marks))


def sgd_with_cosine_schedule(net, steps: int, max_epochs: int, train_size: int):
    """train.py's default optimizer, and conf/scheduler/cosine.yaml's schedule: stepped after every optimizer step,
    over the run's steps (Trainer.estimated_stepping_batches)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=min(steps, max_epochs * math.ceil(train_size / BATCH_SIZE))
    )


def top1_top5_hits(logits, labels):
    """How many labels are the top prediction, and how many are among the top five."""
    hits = logits.topk(5, dim=1).indices == labels[:, None]
    return hits.sum(dim=0).cumsum(dim=0)[[0, 4]]


def evaluation_sums(net, datamodule, batch: dict):
    """A validation batch's summed loss and its top-1 and top-5 hits."""
    logits = net(datamodule.normalize(batch["image"]))
    return F.cross_entropy(logits, batch["label"], reduction="sum"), top1_top5_hits(logits, batch["label"])


def evaluate(net, datamodule, dataset, device):
    """(summed loss, top-1 and top-5 hits, number of images) over `dataset`."""
    net.eval()
    loss_sum, correct = torch.zeros((), device=device), torch.zeros(2, device=device, dtype=torch.long)
    with torch.no_grad():
        for start in range(0, len(dataset), VAL_BATCH_SIZE):
            batch = dataset.__getitems__(range(start, min(start + VAL_BATCH_SIZE, len(dataset))))
            batch_loss, batch_hits = evaluation_sums(
                net, datamodule, {key: value.to(device) for key, value in batch.items()}
            )
            loss_sum += batch_loss
            correct += batch_hits
    return loss_sum, correct, len(dataset)


def epoch_report(epoch: int, train: tuple, val: tuple) -> str:
    """One line of an epoch's loss, top-1 and top-5 (training, validation) from (summed loss, hits, images) each;
    the host reads the values here, once an epoch."""
    (train_loss, train_top1, train_top5), (val_loss, val_top1, val_top5) = (
        [loss.item() / size, *(hits / size).tolist()] for loss, hits, size in (train, val)
    )
    return f"epoch {epoch}: train loss {train_loss:.4f} top-1 {train_top1:.4f} top-5 {train_top5:.4f}, val loss {val_loss:.4f} top-1 {val_top1:.4f} top-5 {val_top5:.4f}"


class PlainLoopModule(L.LightningModule):
    """The plain loop's steps: the same network, loss, optimizer, schedule and on-device epoch sums, printed in
    the same line at every validation."""

    def __init__(self, datamodule: MNISTDataModule, steps: int, max_epochs: int):
        super().__init__()
        self.datamodule, self.steps, self.max_epochs = datamodule, steps, max_epochs
        self.net = LeNet5(MNISTDataModule.input_shape, MNISTDataModule.num_classes)

    def on_train_epoch_start(self) -> None:
        self.train_sums = [torch.zeros((), device=self.device), torch.zeros(2, device=self.device, dtype=torch.long)]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.net(self.datamodule.normalize(batch["image"]))
        loss = F.cross_entropy(logits, batch["label"])
        self.train_sums[0] += loss.detach() * len(logits)
        self.train_sums[1] += top1_top5_hits(logits.detach(), batch["label"])
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_sums = [torch.zeros((), device=self.device), torch.zeros(2, device=self.device, dtype=torch.long)]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        for total, batch_sum in zip(self.val_sums, evaluation_sums(self.net, self.datamodule, batch)):
            total += batch_sum

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            train_size, val_size = len(self.datamodule.train_set), len(self.datamodule.val_set)
            print(
                epoch_report(self.current_epoch, (*self.train_sums, train_size), (*self.val_sums, val_size)), flush=True
            )

    def configure_optimizers(self) -> dict:
        optimizer, scheduler = sgd_with_cosine_schedule(
            self.net, self.steps, self.max_epochs, len(self.datamodule.train_set)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def lightning_loop(data_dir: str, steps: int, first_step: int, seed: int, max_epochs: int, marks_path: Path) -> None:
    """The plain loop's work by a bare Lightning Trainer, in this process; writes StepTimer's marks."""
    L.seed_everything(seed)  # as the plain loop: the datamodule draws its shuffle seed, then the network its weights
    datamodule = MNISTDataModule(data_dir, download=False, batch_size=BATCH_SIZE)
    module = PlainLoopModule(datamodule, steps, max_epochs)
    datamodule.setup("fit")
    sampler = EpochShuffleSampler(len(datamodule.train_set), datamodule.shuffle_seed, BATCH_SIZE)
    train_loader = DataLoader(datamodule.train_set, sampler=sampler, batch_size=None, collate_fn=already_collated)
    val_loader = DataLoader(datamodule.val_set, batch_size=VAL_BATCH_SIZE, collate_fn=already_collated)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[StepTimer(str(marks_path), first_step)],
    )
    trainer.fit(module, train_loader, val_loader)


def timed_loop(variant: str, args: argparse.Namespace, marks_path: Path) -> float:
    """Runs the plain loop, or the lightning variant, in a process of its own; returns its wall time."""
    started = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "benchmarks.overhead",
        f"--{variant}",
        f"--steps={args.steps}",
        f"--first-step={args.first_step}",
        f"--data-dir={args.data_dir}",
        f"--marks={marks_path}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the {variant} loop failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--steps",
        type=int,
        default=500,
        help="optimizer steps per run (430 per epoch: one epoch end, with its validation, falls inside)",
    )
    parser.add_argument("--first-step", type=int, default=20, help="per-step time is measured from this step on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads of every variant (OMP_NUM_THREADS); 0: torch's default, one per core",
    )
    parser.add_argument(
        "--data-dir",
        default="data",
        help="the folder holding MNIST/raw/ (unpacked there from the shipped copy when absent)",
    )
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # the plain loop's own process
    parser.add_argument("--lightning", action="store_true", help=argparse.SUPPRESS)  # the plain loop's in a Trainer
    parser.add_argument("--marks", type=Path, help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    max_epochs = 10  # trainer.max_epochs of conf/trainer/default.yaml: the cosine schedule's length
    if args.plain or args.lightning:
        loop = plain_loop if args.plain else lightning_loop
        loop(args.data_dir, args.steps, args.first_step, seed=42, max_epochs=max_epochs, marks_path=args.marks)
        return
    overrides = [*train_py_overrides(args.data_dir, args.steps), f"trainer.max_epochs={max_epochs}", *overrides]
    if args.threads:  # one thread: per-core figures, and no thread left spinning for a core that another process holds
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(f"{load()} at the start; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}", flush=True)
    results: dict[str, dict[str, list[float]]] = {variant: {"step": [], "process": []} for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat, variant in alternating(VARIANTS, args.repeats):
            marks = Path(scratch, f"{variant}{repeat}.json")
            if variant in ("plain", "lightning"):
                process_s = timed_loop(variant, args, marks)
            else:
                process_s = timed_run(
                    [*overrides, *step_timer_overrides(args.first_step, marks)], Path(scratch, f"{variant}{repeat}")
                )
            results[variant]["process"].append(process_s)
            results[variant]["step"].append(per_step_seconds(marks))
            print(
                f"run {repeat + 1}/{args.repeats} {variant:>8}: {1000 * results[variant]['step'][-1]:.3f} ms/step, process {process_s:.2f} s ({load()})",
                flush=True,
            )
    median = {
        variant: {name: statistics.median(values) for name, values in results[variant].items()} for variant in VARIANTS
    }
    print(f"\ntrain.py {' '.join(overrides)}")
    print(
        f"per step ({args.steps - args.first_step} steps from step {args.first_step}), median of {args.repeats}; the ratio of the medians to the "
        f"plain loop's and to the lightning variant's, and the median of the paired ratios (each repeat's against the same repeat's):"
    )
    for variant in VARIANTS:
        steps = results[variant]["step"]
        ratios = [
            f"{median[variant]['step'] / median[base]['step']:.3f} (paired {paired_ratio(steps, results[base]['step']):.3f}) to {base}"
            for base in VARIANTS[: VARIANTS.index(variant)]  # plain, and lightning for train.py, built on it
        ]
        print(
            f"  {variant:>9}: {1000 * median[variant]['step']:.3f} ms (runs {1000 * min(steps):.3f} to {1000 * max(steps):.3f})"
            + "".join(f", {ratio}" for ratio in ratios)
        )
    print("whole process: " + ", ".join(f"{variant} {median[variant]['process']:.2f} s" for variant in VARIANTS))
    print(f"{load()} at the end; {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
