"""The same short training on each device setting: CPU, CPU DDP, one GPU, all GPUs; a Markdown table.

    python -m benchmarks.device_speed [--settings cpu,cpu_ddp,gpu,gpu_ddp] [--repeats 1] [--out DIR] [train.py overrides ...]

Each setting is a fresh train.py process (its own run directory under --out), timed from start to exit.
Samples/s and seconds per epoch come from the run's timing.csv (callbacks/timing.py: training steps and
the data waits between them, all processes' samples together); the wall time is the whole process
(start-up, data, validation and the rest included). Speed-up is samples/s over the 1-process CPU run's;
scaling efficiency is the speed-up over the same accelerator's single-process run, divided by the
number of processes. Settings the machine cannot run are listed as skipped with the reason, never run.
`data.batch_size` is per process (the Lightning convention), so N processes take N times the samples
per step. Default training: LeNet-5 on random MNIST-shaped images (data=fake), 2 epochs, no test.
With --repeats > 1 the settings run in rotating order and the medians are reported.

Every setting runs under the same conditions: the same training, and its processes' threads pinned
(OMP_NUM_THREADS / MKL_NUM_THREADS, which torch reads at start-up) so that processes x threads fit the cores:
--threads N per process, default cores // processes. Unpinned, torch gives every process one thread per core,
and N processes oversubscribe the cores, or one process on a busy machine is slowed by its own threads: a
speed-up measured so says more about threads than devices. The 1-minute load average before each run is in the
table; a scaling efficiency above 100% (more than N times faster with N processes) is marked as a measurement
artefact, with the likely reason.
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from analysis.run_records import read_timing

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = [
    "data=fake",
    "data.input_shape=[1,28,28]",
    "data.num_classes=10",
    "data.train_size=20000",
    "data.val_size=2000",
    "data.batch_size=128",
    "model=lenet",
    "trainer.max_epochs=2",
    "test=false",
    "callbacks.progress_bar.refresh_rate=0",
]


@dataclass
class Setting:
    name: str
    description: str
    accelerator: str  # the single-process setting of the same accelerator is the scaling baseline
    overrides: list[str]
    processes: int
    skipped: str = ""  # why the machine cannot run it
    threads: int = 1  # per process
    wall_s: list[float] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)  # 1-minute load average before each run
    samples: list[float] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def settings_of(names: list[str]) -> list[Setting]:
    gpus, cores = torch.cuda.device_count(), cpu_cores()
    no_gpu = "no GPU that torch can use on this machine"
    known = {
        "cpu": Setting("cpu", "CPU, 1 process", "cpu", ["trainer=cpu"], 1),
        "cpu_ddp": Setting(
            "cpu_ddp",
            "CPU, DDP 2 processes (gloo)",
            "cpu",
            ["trainer=ddp_cpu", "trainer.devices=2"],
            2,
            "" if cores >= 2 else f"needs 2 CPU cores, this machine has {cores}",
        ),
        "gpu": Setting("gpu", "1 GPU", "gpu", ["trainer=gpu"], 1, "" if gpus else no_gpu),
        "gpu_ddp": Setting(
            "gpu_ddp",
            f"DDP on {max(gpus, 2)} GPUs",
            "gpu",
            ["trainer=ddp", f"trainer.devices={max(gpus, 2)}"],
            max(gpus, 2),
            "" if gpus >= 2 else f"needs 2 GPUs or more, this machine has {gpus}",
        ),
    }
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"error: unknown setting(s) {', '.join(unknown)}: choose from {', '.join(known)}.")
    return [known[name] for name in names]


def pin_threads(settings: list[Setting], threads: int | None) -> None:
    """Threads per process: `threads`, or the cores shared out between the setting's processes."""
    for setting in settings:
        setting.threads = threads or max(1, cpu_cores() // setting.processes)


def run(setting: Setting, overrides: list[str], run_dir: Path) -> None:
    setting.load_before.append(os.getloadavg()[0])
    start = time.perf_counter()
    command = [sys.executable, "train.py", *overrides, *setting.overrides, f"hydra.run.dir={run_dir}"]
    pinned = {**os.environ, "OMP_NUM_THREADS": str(setting.threads), "MKL_NUM_THREADS": str(setting.threads)}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=pinned)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    setting.wall_s.append(time.perf_counter() - start)
    timing = read_timing(run_dir)
    setting.samples_per_s.append(timing["all"]["samples_per_s"])
    setting.samples.append(timing["all"]["samples"])
    setting.epoch_s.append(statistics.median(row["train_s"] for epoch, row in timing.items() if epoch != "all"))


def override_value(overrides: list[str], key: str, default: str) -> str:
    return next(
        (override.split("=", 1)[1] for override in reversed(overrides) if override.split("=", 1)[0] == key), default
    )


def artefact_reason(setting: Setting, baseline: Setting) -> str:
    """Why N processes cannot really be more than N times faster than one: what differed between the runs."""
    load, base_load = statistics.median(setting.load_before), statistics.median(baseline.load_before)
    reasons = []
    if base_load > load + 0.5:
        reasons.append(f"the machine was busier during the 1-process run (load {base_load:.1f} against {load:.1f})")
    if baseline.threads * baseline.processes > cpu_cores() or setting.threads * setting.processes > cpu_cores():
        reasons.append("more threads than cores (oversubscription)")
    reasons.append(
        "the 1-process run was slowed by something the N-process run did not meet (load, threads, caches); rerun with --repeats 3 on an idle machine"
    )
    return "; ".join(reasons)


def table(settings: list[Setting], overrides: list[str]) -> str:
    speed = {setting.name: statistics.median(setting.samples_per_s) for setting in settings if setting.samples_per_s}
    single = {setting.accelerator: setting for setting in settings if setting.processes == 1 and setting.name in speed}
    batch = int(override_value(overrides, "data.batch_size", "128"))
    lines = [
        "| setting | processes | threads/process | global batch | steps | samples/s | s/epoch (training) | wall s (whole process) | load before (1 min) | speed-up vs CPU | scaling efficiency |",
        "|" + " --- |" * 11,
    ]
    notes = []
    for setting in settings:
        global_batch = batch * setting.processes
        if setting.skipped:
            lines.append(
                f"| {setting.description} | {setting.processes} | {setting.threads} | {global_batch} | | skipped: {setting.skipped} | | | | | |"
            )
            continue
        rate = speed[setting.name]
        speedup = f"{rate / speed[single['cpu'].name]:.2f}x" if "cpu" in single else "(no CPU run)"
        baseline = single.get(setting.accelerator)
        if baseline is None:
            efficiency = f"(no 1-process {setting.accelerator} run)"
        else:
            ratio = rate / speed[baseline.name] / setting.processes
            efficiency = f"{ratio:.0%}"
            if ratio > 1.0:
                efficiency += " (artefact, see below)"
                notes.append(
                    f"- {setting.description}: {ratio:.0%} efficiency is a measurement artefact, not a speed-up: {artefact_reason(setting, baseline)}."
                )
        steps = round(statistics.median(setting.samples) / global_batch)
        lines.append(
            f"| {setting.description} | {setting.processes} | {setting.threads} | {global_batch} | {steps} | {rate:.0f} | {statistics.median(setting.epoch_s):.2f} | "
            f"{statistics.median(setting.wall_s):.1f} | {statistics.median(setting.load_before):.2f} | {speedup} | {efficiency} |"
        )
    return "\n".join(lines + ([""] + notes if notes else []))


def machine() -> str:
    gpus = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return f"{platform.node()}: {platform.processor() or platform.machine()}, {cpu_cores()} CPU cores, GPUs: {', '.join(gpus) or 'none'}; torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--settings", default="cpu,cpu_ddp,gpu,gpu_ddp", help="comma-separated: cpu, cpu_ddp, gpu, gpu_ddp"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        help="threads per process, pinned for every setting (default: CPU cores // the setting's processes)",
    )
    parser.add_argument(
        "--out", type=Path, help="where the run directories and device_speed.md go (default: a temporary folder)"
    )
    args, overrides = parser.parse_known_args()
    settings = settings_of(args.settings.split(","))
    pin_threads(settings, args.threads)
    overrides = [*DEFAULTS, *overrides]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        runnable = [setting for setting in settings if not setting.skipped]
        for repeat in range(args.repeats):
            shift = repeat % len(runnable) if runnable else 0
            for setting in runnable[shift:] + runnable[:shift]:  # rotating order: a drift in load hits every setting
                run(setting, overrides, out / f"{setting.name}-{repeat}")
                print(
                    f"run {repeat + 1}/{args.repeats} {setting.name}: {setting.wall_s[-1]:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
        load_after = os.getloadavg()
        report = "\n".join(
            [
                f"`{' '.join(['python -m benchmarks.device_speed', *sys.argv[1:]])}`",
                "",
                f"{datetime.date.today().isoformat()}, {machine()}; load average (1, 5, 15 min) before "
                f"{', '.join(f'{value:.2f}' for value in load_before)}, after {', '.join(f'{value:.2f}' for value in load_after)}; "
                f"median of {args.repeats} run(s) per setting.",
                f"Compared: train.py {' '.join(overrides)}; precision {override_value(overrides, 'trainer.precision', '32-true')}; "
                f"data.batch_size={override_value(overrides, 'data.batch_size', '128')} per process (global batch = per process x processes); "
                f"threads per process pinned with OMP_NUM_THREADS ({', '.join(f'{setting.name} {setting.threads}' for setting in settings)}).",
                "",
                table(settings, overrides),
                "",
            ]
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / "device_speed.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
