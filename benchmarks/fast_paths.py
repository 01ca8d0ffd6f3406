"""Training throughput of ResNet-18 at 64x64 (Tiny-ImageNet's shape, data=fake) with each fast path on and off.

    python -m benchmarks.fast_paths [--batches 200] [--batch-size 256] [--repeats 2] [train.py overrides ...]

Every variant is a fresh `python train.py model=resnet18 data=fake ...` on the same random images, for two
epochs of --batches batches; its samples/s is the timing callback's (timing.csv) for the second epoch, so
that start-up, cuDNN's autotuning and torch.compile's compilation in the first epoch are left out. The
variants, on a GPU: everything on (bf16-mixed, channels-last, the dataset on the device, torch.compile),
then each fast path switched off alone, then all off. Repeats go round the variants in alternating order
(ABBA) and the medians are printed with each variant's ratio to everything on. Without a GPU it runs the
same variants on the CPU (bf16-mixed autocast exists there too; pinned memory and data on the device mean
nothing there; torch.compile with its eager backend, the wiring without inductor's code generation) with a
tiny default step count: a check that every path runs, not a measurement to quote.
"""

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch

from analysis.run_records import read_timing
from benchmarks.runs import alternating, load, timed_run

ALL_ON = {
    "trainer.precision": "bf16-mixed",
    "module.channels_last": "true",
    "data.on_device": "true",
    "data.pin_memory": "true",
    "module.compile": "true",
}
ALL_OFF = {
    "trainer.precision": "32-true",
    "module.channels_last": "false",
    "data.on_device": "false",
    "data.pin_memory": "false",
    "module.compile": "false",
}
SWITCHES = {  # a variant's name: what it switches off
    "bf16-mixed off": ["trainer.precision"],
    "channels-last off": ["module.channels_last"],
    "data on device off (pinned copies)": ["data.on_device"],
    "pinned memory and data on device off": ["data.on_device", "data.pin_memory"],
    "torch.compile off": ["module.compile"],
}


def variants(gpu: bool) -> dict[str, dict[str, str]]:
    all_on, all_off = dict(ALL_ON), dict(ALL_OFF)
    if not gpu:  # pinned memory and data on the device mean nothing on the CPU; inductor would compile for minutes
        all_on.update({"data.on_device": "false", "data.pin_memory": "false", "module.compile": "{backend: eager}"})
    found = {"all on": all_on}
    for name, switched_off in SWITCHES.items():
        if gpu or not name.startswith(("data on device", "pinned")):
            found[name] = {**all_on, **{key: all_off[key] for key in switched_off}}
    found["all off"] = all_off
    return found


def second_epoch_samples_per_s(run_dir: Path) -> float:
    return read_timing(run_dir)["1"]["samples_per_s"]


def main() -> None:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200 if gpu else 3, help="training batches per epoch")
    parser.add_argument("--batch-size", type=int, default=256 if gpu else 16)
    parser.add_argument("--repeats", type=int, default=2 if gpu else 1)
    args, overrides = parser.parse_known_args()
    train_size = args.batches * args.batch_size
    common = [
        "trainer=gpu" if gpu else "trainer=cpu",
        "model=resnet18",
        "model.small_input_stem=true",
        "data=fake",
        f"data.train_size={train_size}",
        f"data.val_size={2 * args.batch_size}",
        f"data.test_size={2 * args.batch_size}",
        f"data.batch_size={args.batch_size}",
        "trainer.max_epochs=2",
        "test=false",
        "callbacks.progress_bar.refresh_rate=0",
        *overrides,
    ]
    chosen = variants(gpu)
    results: dict[str, list[float]] = {name: [] for name in chosen}
    device = torch.cuda.get_device_name() if gpu else f"CPU, {os.cpu_count()} cores"
    print(f"{device}; {load()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for repeat, name in alternating(list(chosen), args.repeats):
            run_dir = Path(scratch, f"{repeat}-{len(results[name])}-{abs(hash(name))}")
            timed_run([*common, *(f"{key}={value}" for key, value in chosen[name].items())], run_dir)
            results[name].append(second_epoch_samples_per_s(run_dir))
            print(
                f"repeat {repeat + 1}/{args.repeats} {name:<38} {results[name][-1]:9.1f} samples/s ({load()})",
                flush=True,
            )
    best = statistics.median(results["all on"])
    print(f"\ntrain.py {' '.join(common)}   ({device})")
    print(f"{'variant':<38} {'samples/s':>10} {'vs all on':>10}")
    for name, values in results.items():
        print(f"{name:<38} {statistics.median(values):10.1f} {statistics.median(values) / best:10.2f}")


if __name__ == "__main__":
    main()
