"""Time from `python train.py` to the first training step, in phases, on a warm cache.

    python -m benchmarks.startup [--repeats 5] [--data-dir data] [train.py overrides ...]

Each repeat starts a fresh `python train.py` (default config: LeNet-5 on the real MNIST, CPU) with
benchmarks/probe.py's callback, which ends the process at the first training step; one run before the
measured ones warms the file cache. The phases, each measured from the end of the previous one:

    python + imports     process start until train.py's imports are done (torch, Lightning, Hydra, ...)
    config               Hydra composes the config, creates the run directory, sets up logging
    data + model build   the datamodule and the LightningModule (network built and tried on an example), loggers
    trainer + data setup the Trainer, loggers' files, prepare_data and setup (MNIST read into memory)
    pre-training         model summaries, layer report, the graph traced into TensorBoard, sanity validation
    first batch          optimizers, the loader's first batch

The medians of each phase and of the total are printed with the load average, and whether scipy is
installed: `import lightning` imports torchmetrics, which imports scipy.signal when it can (scipy comes with
the optuna extra, so with `pip install -e '.[dev]'`, not with the README's `pip install -e .`).
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.runs import REPO, load

# The marks, in order, that end each phase; "start" is taken by this script before it starts python,
# "imported" and "composed" by the wrapper below, the others by benchmarks/probe.py.
PHASES = {
    "python + imports": "imported",
    "config": "composed",
    "data + model build": "built",
    "trainer + data setup": "setup",
    "pre-training": "train_start",
    "first batch": "first_step",
}

# train.py run as `python train.py`, with two marks added: when its imports are done (hydra.main decorates
# its main function, the line after them) and when the composed config reaches train() (it builds the datamodule first)
WRAPPER = """
import json, os, runpy, sys, time
marks_path = sys.argv.pop(1)
sys.argv[0] = "train.py"
sys.path.insert(0, os.getcwd())
import hydra
import core.build
marks = {}
decorate = hydra.main
def decorate_marking(*args, **kwargs):
    marks["imported"] = time.time()
    return decorate(*args, **kwargs)
hydra.main = decorate_marking
build_datamodule = core.build.build_datamodule
def build_datamodule_marking(cfg):
    marks["composed"] = time.time()
    with open(marks_path + ".outer", "w") as file:
        json.dump(marks, file)
    return build_datamodule(cfg)
core.build.build_datamodule = build_datamodule_marking
runpy.run_path("train.py", run_name="__main__")
"""


def timed_start(overrides: list[str], run_dir: Path, marks_path: Path) -> dict[str, float]:
    probe = ["+callbacks.probe._target_=benchmarks.probe.Probe", f"+callbacks.probe.path={marks_path}", "+callbacks.probe.exit_at_first_step=true"]
    start = time.time()
    result = subprocess.run([sys.executable, "-c", WRAPPER, str(marks_path), *overrides, *probe, f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0 or not marks_path.exists():
        raise SystemExit(f"train.py {' '.join(overrides)} failed:\n{result.stderr[-3000:]}")
    marks = {"start": start, **json.loads(Path(f"{marks_path}.outer").read_text()), **json.loads(marks_path.read_text())}
    phases, previous = {}, "start"
    for phase, mark in PHASES.items():
        phases[phase] = marks[mark] - marks[previous]
        previous = mark
    phases["total"] = marks["first_step"] - marks["start"]
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", default="data", help="the folder holding MNIST/raw/ (unpacked there from the shipped copy when absent)")
    args, overrides = parser.parse_known_args()
    overrides = ["trainer=cpu", f"data.data_dir={args.data_dir}", "data.download=false", *overrides]
    print(f"{load()} at the start", flush=True)
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats + 1):  # the first run warms the cache and is not counted
            phases = timed_start(overrides, Path(scratch, f"run{repeat}"), Path(scratch, f"marks{repeat}.json"))
            print(f"run {repeat}{' (warm-up)' if repeat == 0 else ''}: {phases['total']:.2f} s to the first step ({load()})", flush=True)
            if repeat:
                runs.append(phases)
    print(f"\ntrain.py {' '.join(overrides)}\nmedian of {args.repeats} runs:")
    for phase in [*PHASES, "total"]:
        values = [run[phase] for run in runs]
        print(f"  {phase:<22} {statistics.median(values):6.2f} s   (min {min(values):.2f}, max {max(values):.2f})")
    scipy = "installed: torchmetrics imports scipy.signal" if importlib.util.find_spec("scipy") else "not installed"
    print(f"{load()} at the end; {os.cpu_count()} CPU cores; scipy {scipy}")


if __name__ == "__main__":
    main()
