"""What the callbacks' hooks cost per training step inside a real train.py run, with and without our callbacks.

    python -m benchmarks.step_hooks [--steps 500] [--repeats 3] [--threads 1] [--data-dir data] [train.py overrides ...]

Lightning calls each of the six hooks of a training step (on_train_batch_start, on_before_zero_grad,
on_before_backward, on_after_backward, on_before_optimizer_step, on_train_batch_end) on every callback,
whether it overrides the hook or not. Each run here is a fresh `python train.py` (LeNet-5 on the real MNIST,
batch 128, one thread) in which Lightning's callback dispatch (`lightning.pytorch.trainer.call._call_callback_hooks`)
is wrapped in a clock: the time of every call of those six hooks, the dispatch to all callbacks and their
bodies together, is added up, and divided by the steps. The same clock times the epoch ends: from the end of an
epoch's last training step to the start of the next epoch's first (validation, checkpoints, files, logging).
Two variants alternate: train.py's defaults and "bare" (benchmarks/overhead.py's BARE: only the three
callbacks train.py always adds).

Why not a micro-benchmark: Python between the forward, backward and optimizer kernels runs several times
slower than the same code in a tight loop (the kernels evict its data from the CPU caches), so the cost of
a hook is only seen in place. The medians over --repeats are printed per hook, with the sum per step.
"""

import argparse
import math
import statistics
import tempfile
from pathlib import Path

from benchmarks.overhead import BARE, train_py_overrides
from benchmarks.runs import REPO, alternating, instrumented_run, load

EPOCH_END = "epoch end, ms"
STEP_HOOKS = ("on_train_batch_start", "on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_train_batch_end")

# train.py run as `python train.py`, with Lightning's callback dispatch timed for the step hooks
WRAPPER = """
import atexit, json, os, runpy, sys, time
from collections import defaultdict
from lightning.pytorch.trainer import call
result_path, hooks = sys.argv.pop(1), set(sys.argv.pop(1).split(","))
sys.argv[0] = "train.py"
sys.path.insert(0, os.getcwd())
seconds, calls, epoch_ends, last_step_end = defaultdict(float), defaultdict(int), [], None
dispatch = call._call_callback_hooks
def timed_dispatch(trainer, hook_name, *args, **kwargs):
    global last_step_end
    if hook_name not in hooks:
        return dispatch(trainer, hook_name, *args, **kwargs)
    started = time.perf_counter()
    if hook_name == "on_train_batch_start" and args[1] == 0 and last_step_end is not None:  # args: batch, batch_idx
        epoch_ends.append(started - last_step_end)
    dispatch(trainer, hook_name, *args, **kwargs)
    ended = time.perf_counter()
    seconds[hook_name] += ended - started
    calls[hook_name] += 1
    if hook_name == "on_train_batch_end":
        last_step_end = ended
call._call_callback_hooks = timed_dispatch
def write():
    with open(result_path, "w") as file:
        json.dump({"seconds": seconds, "steps": calls["on_train_batch_end"], "epoch_ends": epoch_ends}, file)
atexit.register(write)
runpy.run_path("train.py", run_name="__main__")
"""


def timed_hooks(overrides: list[str], run_dir: Path, result_path: Path, threads: int) -> dict[str, float]:
    """Microseconds per training step spent in each step hook's dispatch (all callbacks), and the epoch ends'
    mean in milliseconds, of one fresh train.py."""
    measured = instrumented_run(WRAPPER, [",".join(STEP_HOOKS), *overrides, f"hydra.run.dir={run_dir}"], result_path, threads)
    per_step = {hook: 1e6 * measured["seconds"].get(hook, 0.0) / measured["steps"] for hook in STEP_HOOKS}
    epoch_ends = measured["epoch_ends"]
    return {**per_step, EPOCH_END: 1e3 * statistics.mean(epoch_ends) if epoch_ends else math.nan}


def step_hooks_total(run: dict[str, float]) -> float:
    return sum(run[hook] for hook in STEP_HOOKS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default="data", help="the folder holding MNIST/raw/ (unpacked there from the shipped copy when absent)")
    args, overrides = parser.parse_known_args()
    common = [*train_py_overrides(args.data_dir, args.steps), *overrides]
    variants = {"train.py": common, "bare": [*common, *BARE]}
    print(f"{load()} at the start", flush=True)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat, name in alternating(list(variants), args.repeats):
            label = f"{name.replace('.', '_')}{repeat}"
            runs[name].append(timed_hooks(variants[name], Path(scratch, label), Path(scratch, f"{label}.json"), args.threads))
            print(f"run {repeat + 1}/{args.repeats} {name:>8}: {step_hooks_total(runs[name][-1]):6.1f} us per step in the step hooks", flush=True)
    print(f"\ntrain.py {' '.join(common)}\nbare: the same and {' '.join(BARE)}")
    print(f"microseconds per training step in the callbacks' step hooks (dispatch and bodies), and the epoch ends, median of {args.repeats}:")
    print(f"  {'hook':<26}" + "".join(f"{name:>10}" for name in variants))
    for hook in [*STEP_HOOKS, "all six", EPOCH_END]:
        medians = [statistics.median(step_hooks_total(run) if hook == "all six" else run[hook] for run in runs[name]) for name in variants]
        print(f"  {hook:<26}" + "".join(f"{median:10.1f}" for median in medians))
    print(f"{load()} at the end")


if __name__ == "__main__":
    main()
