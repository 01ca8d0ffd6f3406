"""The model zoo on the real MNIST: parameters, test top-1 after a short run, training speed.

    python -m benchmarks.model_zoo_mnist --data-dir data [--models mlp,lenet,...] [--out DIR]

Each model is trained by the real train.py (a subprocess, its own run directory under --out) with the
recipe below, then tested on MNIST's test images (the heavy CNNs: a limited number of training steps and
test images, as the table's recipe column says). Figures come from the run directory: parameters from layers.txt (Lightning's summary),
test top-1 from the TensorBoard events, training speed from the wall-clock times of the per-step loss
events (training steps only: no start-up, validation or test). Seconds per epoch are 55,000 training
images divided by that speed. Prints a Markdown table with the machine, date and load, and writes it
to DIR/model_zoo_mnist.md.
"""

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from analysis.run_records import read_scalars

REPO = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 55_000  # MNIST's 60k minus the 5k validation images
TEST_IMAGES = 10_000
BATCH_SIZE = 128
LOG_EVERY = 10

# Recipes: a few epochs for the cheap models. The ImageNet CNNs cost 0.1-1 G multiply-accumulates per
# 28x28 digit with the small-input stem (see summarize.py), minutes per hundred steps on two CPU cores:
# ResNet-18 trains 150 steps and is tested on all 10k test images, the others 60 steps, tested on 2,000.
ADAM = ["optimizer=adam", "optimizer.lr=2e-3", "scheduler=cosine"]
RECURRENT = [*ADAM, "trainer.max_epochs=3", "+trainer.gradient_clip_val=1.0"]
SHORT = ["trainer.max_epochs=1", "+trainer.limit_val_batches=2", "data.eval_batch_size=250"]
HEAVY = [*SHORT, "+trainer.limit_train_batches=60", "+trainer.limit_test_batches=8"]
RECIPES = {
    "mlp": ["trainer.max_epochs=3"],
    "lenet": ["trainer.max_epochs=3"],
    "rnn": RECURRENT,
    "lstm": RECURRENT,
    "gru": RECURRENT,
    "resnet18": [*SHORT, "+trainer.limit_train_batches=150"],
    "nin": [*ADAM, "optimizer.lr=1e-3", *HEAVY],
    "alexnet": [*ADAM, "optimizer.lr=1e-4", *HEAVY],
    "vgg11": [*ADAM, "optimizer.lr=1e-4", *HEAVY],
    "vgg16": [*ADAM, "optimizer.lr=1e-4", "model.batch_norm=true", *HEAVY],
    "googlenet": [*ADAM, "optimizer.lr=1e-3", *HEAVY],
    "resnet34": HEAVY,
    "resnet50": HEAVY,
    "densenet121": HEAVY,
    "mobilenet_v2": [*ADAM, *HEAVY],
    "efficientnet_b0": [*ADAM, *HEAVY],
}


def train(model: str, data_dir: str, run_dir: Path) -> float:
    """Runs train.py; returns the whole command's wall time in seconds."""
    command = [
        sys.executable, "train.py", f"model={model}", *RECIPES[model],
        f"data.data_dir={data_dir}", "data.download=false", f"data.batch_size={BATCH_SIZE}",
        "trainer=cpu", f"trainer.log_every_n_steps={LOG_EVERY}", "callbacks.progress_bar.refresh_rate=0",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def figures(model: str, run_dir: Path, wall: float) -> dict[str, str]:
    report = (run_dir / "layers.txt").read_text()
    params = re.search(r"^(\S+(?: [KMGT])?)\s+Total params", report, re.MULTILINE).group(1)  # Lightning's summary
    scalars = read_scalars(run_dir / "tensorboard")
    images_per_second = training_speed(scalars["train_step/loss"], [event.step for event in scalars["train/loss"]])
    trained_steps = scalars["train/loss"][-1].step + 1
    return {
        "model": model,
        "params": params,
        "test top-1": f"{100 * scalars['test/top1'][-1].value:.2f}%",
        "test images": f"{test_images(RECIPES[model]):,}",
        "trained": f"{len(scalars['train/loss'])} ep, {trained_steps:,} steps",
        "train images/s": f"{images_per_second:,.0f}",
        "s/epoch": f"{TRAIN_IMAGES / images_per_second:,.0f}",
        "run wall s": f"{wall:,.0f}",
        "recipe": " ".join(RECIPES[model]),
    }


def test_images(recipe: list[str]) -> int:
    """How many of the test images a recipe tests on (the first ones, when it limits the test batches)."""
    settings = dict(override.lstrip("+").split("=", 1) for override in recipe)
    if "trainer.limit_test_batches" not in settings:
        return TEST_IMAGES
    return min(TEST_IMAGES, int(settings["trainer.limit_test_batches"]) * int(settings["data.eval_batch_size"]))


def training_speed(step_events: list, epoch_end_steps: list[int]) -> float:
    """Images per second between the loss events of the same epoch (across an epoch's end, validation would count)."""
    steps = seconds = 0.0
    previous_end = -1
    for end in epoch_end_steps:
        epoch = [event for event in step_events if previous_end < event.step <= end]
        if len(epoch) >= 2:
            steps += epoch[-1].step - epoch[0].step
            seconds += epoch[-1].wall_time - epoch[0].wall_time
        previous_end = end
    return steps * BATCH_SIZE / seconds


def markdown(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row[column] for column in header) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        default="data",
        help="folder holding MNIST/raw/ (unpacked there from the shipped copy when absent)",
    )
    parser.add_argument("--models", default=",".join(RECIPES), help="comma-separated, from: " + ", ".join(RECIPES))
    parser.add_argument(
        "--out",
        default=str(REPO / "logs" / "benchmarks" / "model_zoo_mnist"),
        help="run directories and the table go here",
    )
    args = parser.parse_args()
    out = Path(args.out)
    started = datetime.datetime.now()
    load_before = os.getloadavg()
    rows = []
    for model in args.models.split(","):
        run_dir = out / model
        wall = train(model, args.data_dir, run_dir)
        rows.append(figures(model, run_dir, wall))
        print(markdown(rows[-1:]), flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    summary = (
        f"{markdown(rows)}\n\n`python -m benchmarks.model_zoo_mnist --models {args.models}` on {machine}, "
        f"{started:%Y-%m-%d %H:%M}; load average {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
        f"batch {BATCH_SIZE}; s/epoch = {TRAIN_IMAGES:,} images / training speed.\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_zoo_mnist.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
