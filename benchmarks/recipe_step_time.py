"""Time per training step of an experiment's model, optimizer and batch on this machine, in CPU time and wall time:

    python benchmarks/recipe_step_time.py experiment=tiny_imagenet_resnet18_cpu [--steps 20] [--train-images 100000]

Builds the composed config's module (train.py's own builders) on random images of the datamodule's shape and
times forward, backward and optimizer step. CPU time (time.process_time) counts only what this process
computed, so on a shared machine it still tells what an idle core would take, where wall time does not;
the epoch time is extrapolated as steps per epoch x time per step (data loading, validation not counted).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from core.build import build_datamodule, build_module  # noqa: E402
from tests.compose import compose_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--train-images", type=int, default=100_000, help="training images per epoch (Tiny-ImageNet: 100,000)"
    )
    args, overrides = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as scratch:
        cfg = compose_config(["data=fake", "++data.augment=null", *overrides], Path(scratch))
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    optimizer = instantiate(cfg.optimizer, _partial_=True)(module.parameters())
    batch = cfg.data.batch_size
    images = torch.randn(batch, *datamodule.input_shape)
    labels = torch.randint(0, datamodule.num_classes, (batch,))
    module.train()
    cpu, wall = [], []
    for step in range(args.warmup + args.steps):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        loss = torch.nn.functional.cross_entropy(module(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            cpu.append(time.process_time() - cpu_start)
            wall.append(time.perf_counter() - wall_start)
    steps_per_epoch = -(-args.train_images // batch)
    cpu_step, wall_step = statistics.median(cpu), statistics.median(wall)
    print(
        f"{' '.join(overrides)}: batch {batch}, input {tuple(datamodule.input_shape)}, {torch.get_num_threads()} thread(s), "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; median of {args.steps} steps after {args.warmup} warm-up"
    )
    print(
        f"CPU time per step {cpu_step:.2f} s -> {steps_per_epoch} steps per epoch = {cpu_step * steps_per_epoch / 60:.0f} min of CPU time per epoch"
    )
    print(
        f"wall time per step {wall_step:.2f} s -> {wall_step * steps_per_epoch / 60:.0f} min per epoch at this machine's load"
    )


if __name__ == "__main__":
    main()
