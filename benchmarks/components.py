"""What single pieces of a training step and of an epoch end cost, each timed in this one process on the CPU.

    python -m benchmarks.components [--threads 1] [--repeats 5]

The figures behind the README's account of the framework overhead (Speed): the epoch metrics per batch
(torchmetrics' against lightning_modules/metrics.py), the profiler context Lightning opens around every hook
call (its PassThroughProfiler against core.build.NoProfiler), the running hook's name that Lightning sets on the
module around every hook call (nn.Module's __setattr__ against ImageClassifier's), one hook dispatched to train.py's 16 callbacks
(with Lightning's ModelCheckpoint and with callbacks/model_checkpoint.py), a batch from our training loader against
indexing the tensor directly, the first tensor operation after an optimizer step against the next one,
and the epoch end's work: drawing MNIST's validation figures, writing a 5,000-row prediction file, handing
both to the background writer, and the writer's start. Each figure is the median of --repeats timings.
LeNet-5, MNIST-shaped random data (1x28x28, 10 classes), batches of 128.
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.profilers import PassThroughProfiler
from torch.nn import functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from benchmarks.runs import load
from core.background import BackgroundWorker
from core.build import NoProfiler
from core.figures import short_name, validation_figures
from core.prediction_files import write_predictions
from datamodules.fake import FakeDataModule
from lightning_modules.metrics import Mean, TopKAccuracy
from lightning_modules.nets.lenet import LeNet5

BATCH, CLASSES, VAL_SAMPLES = 128, 10, 5000


def per_call(work: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over repeats of the seconds per call of `work`, after a warm-up."""
    for _ in range(min(calls, 50)):
        work()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            work()
        timings.append((time.perf_counter() - started) / calls)
    return statistics.median(timings)


def metric_updates(repeats: int) -> dict[str, float]:
    logits, labels, loss = torch.randn(BATCH, CLASSES), torch.randint(0, CLASSES, (BATCH,)), torch.tensor(2.3)
    theirs = MetricCollection({"top1": MulticlassAccuracy(CLASSES, top_k=1, average="micro"), "top5": MulticlassAccuracy(CLASSES, top_k=5, average="micro")})
    their_loss = MeanMetric()
    one_per_k = MetricCollection({"top1": TopKAccuracy({"top1": 1}), "top5": TopKAccuracy({"top5": 5})}, compute_groups=False)
    ours = TopKAccuracy({"top1": 1, "top5": 5})
    our_loss = Mean()
    return {
        "epoch metrics per batch: torchmetrics MulticlassAccuracy top-1 + top-5, MeanMetric": per_call(lambda: (theirs.update(logits, labels), their_loss.update(loss, weight=BATCH)), 1000, repeats),
        "epoch metrics per batch: lightning_modules/metrics.py, a TopKAccuracy per k in a MetricCollection, Mean": per_call(lambda: (one_per_k.update(logits, labels), our_loss.update(loss, weight=BATCH)), 1000, repeats),
        "epoch metrics per batch: lightning_modules/metrics.py, one TopKAccuracy for top-1 and top-5, Mean (train.py)": per_call(lambda: (ours.update(logits, labels), our_loss.update(loss, weight=BATCH)), 1000, repeats),
    }


def profiler_contexts(repeats: int) -> dict[str, float]:
    def opened_and_closed(profiler):
        def work():
            with profiler.profile("[Callback]ModelCheckpoint.on_train_batch_end"):
                pass
        return work

    return {
        "profiler context per hook call: Lightning's PassThroughProfiler": per_call(opened_and_closed(PassThroughProfiler()), 20000, repeats),
        "profiler context per hook call: core.build.NoProfiler": per_call(opened_and_closed(NoProfiler()), 20000, repeats),
    }


def hook_name_records(repeats: int) -> dict[str, float]:
    """Lightning recording the running hook's name on the LightningModule, as it does around every hook call."""
    from lightning import LightningModule

    from lightning_modules.classifier import ImageClassifier

    lenet = ImageClassifier(net={"_target_": "lightning_modules.nets.lenet.LeNet5"}, optimizer={"_target_": "torch.optim.SGD", "lr": 0.1}, scheduler=None, input_shape=(1, 28, 28), num_classes=CLASSES)
    return {
        "the running hook's name set on the module: nn.Module.__setattr__": per_call(lambda: LightningModule.__setattr__(lenet, "_current_fx_name", "training_step"), 20000, repeats),
        "the running hook's name set on the module: ImageClassifier.__setattr__": per_call(lambda: setattr(lenet, "_current_fx_name", "training_step"), 20000, repeats),
    }


def hook_dispatch(repeats: int) -> dict[str, float]:
    """Lightning calling one hook on train.py's 16 callbacks, none of which overrides it: 13 plain ones and 3 checkpoints."""
    from lightning import Callback, Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
    from lightning.pytorch.trainer import call

    from callbacks.model_checkpoint import ModelCheckpoint

    def dispatched(checkpoint_class):
        checkpoints = [checkpoint_class(monitor=f"val/top{k}", mode="max") for k in (1, 2, 3)]  # nothing is saved: no folder
        trainer = Trainer(callbacks=[Callback() for _ in range(13)] + checkpoints, logger=False, enable_progress_bar=False, enable_model_summary=False, profiler=NoProfiler())
        return per_call(lambda: call._call_callback_hooks(trainer, "on_before_backward", None), 2000, repeats)

    return {
        "one hook dispatched to 16 callbacks, 3 of them Lightning's ModelCheckpoint": dispatched(LightningModelCheckpoint),
        "one hook dispatched to 16 callbacks, 3 of them callbacks/model_checkpoint.py": dispatched(ModelCheckpoint),
    }


def batches(repeats: int) -> dict[str, float]:
    datamodule = FakeDataModule(input_shape=(1, 28, 28), num_classes=CLASSES, train_size=BATCH * 100, batch_size=BATCH)
    datamodule.setup("fit")
    dataset, order = datamodule.train_set, torch.randperm(BATCH * 100)

    def through_the_loader():
        for _ in datamodule.train_dataloader():
            pass

    def indexing():
        for start in range(0, len(order), BATCH):
            dataset.__getitems__(order[start : start + BATCH])

    return {
        "a training batch: through our DataLoader": per_call(through_the_loader, 1, repeats) / 100,
        "a training batch: indexing the tensor directly": per_call(indexing, 1, repeats) / 100,
    }


def after_the_optimizer_step(repeats: int) -> dict[str, float]:
    net = LeNet5((1, 28, 28), CLASSES)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    images, labels = torch.randn(BATCH, 1, 28, 28), torch.randint(0, CLASSES, (BATCH,))
    first, second = [], []
    for step in range(20 + 50 * repeats):
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        started = time.perf_counter()
        torch.isfinite(loss.detach()).all()
        between = time.perf_counter()
        torch.isfinite(loss.detach()).all()
        if step >= 20:
            first.append(between - started)
            second.append(time.perf_counter() - between)
    return {
        "torch.isfinite(loss).all(), first operation after the optimizer step": statistics.median(first),
        "torch.isfinite(loss).all(), the same right after": statistics.median(second),
    }


def epoch_end(repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    names = [f"{digit} - digit" for digit in range(CLASSES)]
    figures = (rng.integers(0, 500, (CLASSES, CLASSES)), names, 20, 20, rng.integers(0, 256, (16, 1, 28, 28), dtype=np.uint8), ["#1\ntrue: 1 - one\npredicted: 7 - seven"] * 16)
    probabilities = rng.random((VAL_SAMPLES, 5)).astype(np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        columns = dict(
            split="val", stage="val", index=np.arange(VAL_SAMPLES), label=rng.integers(0, CLASSES, VAL_SAMPLES), loss=rng.random(VAL_SAMPLES).astype(np.float32),
            top_ids=rng.integers(0, CLASSES, (VAL_SAMPLES, 5)), top_probs=probabilities, class_names=names,
            sources=[f"train-images-idx3-ubyte[{index}]" for index in range(VAL_SAMPLES)], epoch=0, checkpoint="", data_config={},
        )
        path = Path(scratch, "val-epoch000.csv")
        results = {
            "drawing MNIST's validation figures (confusion matrix, 16 misclassified images)": per_call(lambda: validation_figures(*figures), 1, repeats),
            f"writing a {VAL_SAMPLES}-row prediction file": per_call(lambda: write_predictions(path, **columns), 1, repeats),
        }
        worker = BackgroundWorker()
        started = time.perf_counter()
        worker.submit(short_name, "a class name", what="a first result")  # unpickling it imports core.figures: numpy, matplotlib
        worker.collect(wait=True)
        results["background writer: start to its first result (its imports)"] = time.perf_counter() - started
        handed = []
        for _ in range(repeats):
            started = time.perf_counter()
            worker.submit(validation_figures, *figures, what="the figures")
            worker.submit(write_predictions, path, what="the prediction file", **columns)
            handed.append(time.perf_counter() - started)
            worker.collect(wait=True)
        worker.close()
        results["background writer: handing over both (the training process's share)"] = statistics.median(handed)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: per-core figures, as benchmarks/overhead.py)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{load()} at the start; torch threads {torch.get_num_threads()}, {args.repeats} repeats")
    rows = {**metric_updates(args.repeats), **profiler_contexts(args.repeats), **hook_name_records(args.repeats), **hook_dispatch(args.repeats), **batches(args.repeats), **after_the_optimizer_step(args.repeats), **epoch_end(args.repeats)}
    width = max(map(len, rows))
    for name, seconds in rows.items():
        print(f"{name:<{width}}  " + (f"{1e3 * seconds:8.1f} ms" if seconds >= 1e-3 else f"{1e6 * seconds:8.1f} us"))
    print(f"{load()} at the end")


if __name__ == "__main__":
    main()
