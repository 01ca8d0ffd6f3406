"""Where a training step's time goes, phase by phase, in the plain loop, the plain loop in Lightning's Trainer, bare and train.py.

    python -m benchmarks.step_phases [--steps 400] [--first-step 50] [--repeats 3] [--threads 1] [--data-dir data]
                                     [--baseline OTHER_CHECKOUT] [train.py overrides ...]

The four variants of benchmarks/overhead.py (LeNet-5 on the real MNIST, batch 128, one thread), each a fresh
process, with a clock around the three pieces of real work of a step: the network's forward
(`LeNet5.forward`), the backward (`Tensor.backward`) and the optimizer's update (`torch.optim.sgd.sgd`). The
time between them is the rest of the step:

    forward -> backward   the loss, the epoch metrics, zeroing the gradients; Lightning's closure and hooks
    backward -> update    gradient clipping (none here) and the hooks before the optimizer step
    update -> forward     the step's end (hooks, logging, the schedule), fetching and normalising the next batch,
                          the next step's start

Each phase's median over the training steps from --first-step on (validation excluded: --steps stays inside
the first epoch), then the median over --repeats runs. The phases add up to about a step (a median of each).
The last row counts the tensor values read by the host per step (`Tensor.item`): on a GPU each one waits for
the device.
--baseline adds bare and train.py run from another checkout of this repository (an earlier commit, say),
alternating with the rest, so that two versions of the code are compared in the same stretch of time.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.overhead import BARE, train_py_overrides
from benchmarks.runs import REPO, alternating, instrumented_run, load

PHASES = {
    "F<F>": "forward",
    "F>B<": "forward -> backward",
    "B<B>": "backward",
    "B>S<": "backward -> update",
    "S<S>": "optimizer update",
    "S>F<": "update -> next forward",
}

# runs the plain loop or train.py (argv[2:]) with the three pieces timed and the host's reads of tensor values
# counted; writes each phase's median and the reads per step to argv[1]
WRAPPER = """
import atexit, json, os, runpy, statistics, sys, time
from collections import defaultdict
import torch
import torch.optim.sgd as sgd_module
from lightning_modules.nets.lenet import LeNet5
result_path, first_step = sys.argv.pop(1), int(sys.argv.pop(1))
events, forwards = [], [0]
def clocked(owner, name, mark, training_only=False):
    work = getattr(owner, name)
    def timed(*args, **kwargs):
        if training_only:
            forwards[0] += args[0].training
        recording = forwards[0] > first_step and (not training_only or args[0].training)
        if recording:
            events.append((mark + "<", time.perf_counter()))
        result = work(*args, **kwargs)
        if recording:
            events.append((mark + ">", time.perf_counter()))
        return result
    setattr(owner, name, timed)
clocked(LeNet5, "forward", "F", training_only=True)
clocked(torch.Tensor, "backward", "B")
clocked(sgd_module, "sgd", "S")
reads, read = [0], torch.Tensor.item
def counted_read(tensor):  # a tensor's value read by the host: on a GPU the host waits for the device
    reads[0] += forwards[0] > first_step
    return read(tensor)
torch.Tensor.item = counted_read
def write():
    phases = defaultdict(list)
    for (mark, start), (next_mark, end) in zip(events, events[1:]):
        phases[mark + next_mark].append(end - start)
    steps = sum(mark == "F<" for mark, _ in events)
    with open(result_path, "w") as file:
        json.dump({**{phase: statistics.median(seconds) for phase, seconds in phases.items()}, "reads_per_step": reads[0] / max(steps, 1)}, file)
atexit.register(write)
sys.path.insert(0, os.getcwd())
if sys.argv[1] in ("--plain", "--lightning"):
    runpy.run_module("benchmarks.overhead", run_name="__main__")
else:
    sys.argv[0] = "train.py"
    runpy.run_path("train.py", run_name="__main__")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps per run (an MNIST epoch has 430: no validation inside)")
    parser.add_argument("--first-step", type=int, default=50, help="steps before this one are warm-up, not timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default="data", help="the folder holding MNIST/raw/ (unpacked there from the shipped copy when absent)")
    parser.add_argument("--baseline", type=Path, help="another checkout of this repository whose bare and train.py run too (columns marked *)")
    args, overrides = parser.parse_known_args()
    train_py = [*train_py_overrides(args.data_dir, args.steps), *overrides]
    with tempfile.TemporaryDirectory() as scratch:
        variants = {
            **{
                loop: (REPO, [f"--{loop}", f"--steps={args.steps}", f"--first-step={args.first_step}", f"--data-dir={args.data_dir}", f"--marks={Path(scratch, 'marks.json')}"])
                for loop in ("plain", "lightning")
            },
            "bare": (REPO, [*train_py, *BARE, f"hydra.run.dir={Path(scratch, 'bare')}"]),
            "train.py": (REPO, [*train_py, f"hydra.run.dir={Path(scratch, 'train_py')}"]),
        }
        if args.baseline:
            variants["bare*"] = (args.baseline.resolve(), [*train_py, *BARE, f"hydra.run.dir={Path(scratch, 'baseline_bare')}"])
            variants["train.py*"] = (args.baseline.resolve(), [*train_py, f"hydra.run.dir={Path(scratch, 'baseline_train_py')}"])
        print(f"{load()} at the start", flush=True)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for repeat, name in alternating(list(variants), args.repeats):
            checkout, arguments = variants[name]
            runs[name].append(instrumented_run(WRAPPER, [str(args.first_step), *arguments], Path(scratch, f"{name}{repeat}.json"), args.threads, checkout))
            print(f"run {repeat + 1}/{args.repeats} {name:>8}: {1e3 * sum(runs[name][-1].get(phase, 0.0) for phase in PHASES):.3f} ms per step", flush=True)
    print(f"\ntrain.py {' '.join(train_py)}\nbare: the same and {' '.join(BARE)}" + (f"\n*: run from {args.baseline}" if args.baseline else ""))
    print(f"microseconds per training step, steps {args.first_step}-{args.steps}, median of {args.repeats} runs:")
    print(f"  {'phase':<24}" + "".join(f"{name:>10}" for name in variants))
    medians = {name: {phase: 1e6 * statistics.median(run.get(phase, 0.0) for run in runs[name]) for phase in PHASES} for name in variants}
    for phase, label in PHASES.items():
        print(f"  {label:<24}" + "".join(f"{medians[name][phase]:10.1f}" for name in variants))
    print(f"  {'all phases':<24}" + "".join(f"{sum(medians[name].values()):10.1f}" for name in variants))
    print(f"  {'item() calls per step':<24}" + "".join(f"{statistics.median(run['reads_per_step'] for run in runs[name]):10.2f}" for name in variants))
    print(f"{load()} at the end")


if __name__ == "__main__":
    main()
