"""Per-step training time of train.py with two sets of overrides, A and B, measured alike in the same stretch of time.

    python -m benchmarks.ab --a "OVERRIDE ..." --b "OVERRIDE ..." [--steps 300] [--first-step 20] [--repeats 3] [--threads 1]
                            [--data-dir data] [train.py overrides common to both ...]

For the question "does this setting make training steps faster": each run is a fresh `python train.py` with
benchmarks/runs.py's StepTimer timing it from the start of step --first-step (start-up and warm-up left out) to the end of
step --steps; A and B alternate (ABBA ...), so that a drift in the machine's load hits both alike, and the medians,
their ratio B/A and the median of the paired ratios (each repeat's B against its A) are printed. The default
run is LeNet-5 on the real MNIST on the CPU, seed 42, no test, no progress bar; the common overrides change it. Example,
the DDP processes agreeing on a stop signal after every step against every 50 (README, Speed):

    python -m benchmarks.ab --a callbacks.stop_on_signal.check_every_n_steps=1 --b callbacks.stop_on_signal.check_every_n_steps=50 \\
        trainer.devices=2 trainer.strategy=ddp
"""

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.runs import (
    alternating,
    load,
    paired_ratio,
    per_step_seconds,
    step_timer_overrides,
    timed_run,
    train_py_overrides,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="train.py overrides of variant A, separated by spaces")
    parser.add_argument("--b", required=True, help="train.py overrides of variant B, separated by spaces")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--first-step", type=int, default=20, help="per-step time is measured from this step on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads per process (OMP_NUM_THREADS); 0: torch's default"
    )
    parser.add_argument(
        "--data-dir",
        default="data",
        help="the folder holding MNIST/raw/ (unpacked there from the shipped copy when absent)",
    )
    args, common = parser.parse_known_args()
    if not 0 <= args.first_step < args.steps:
        parser.error(f"--first-step must be at least 0 and below --steps ({args.steps}), got {args.first_step}")
    common = [*train_py_overrides(args.data_dir, args.steps), "callbacks.progress_bar.refresh_rate=0", *common]
    variants = {"A": args.a.split(), "B": args.b.split()}
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(f"{load()} at the start; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}", flush=True)
    step_s: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat, name in alternating("AB", args.repeats):
            marks = Path(scratch, f"{name}{repeat}.json")
            overrides = [*common, *variants[name], *step_timer_overrides(args.first_step, marks)]
            process_s = timed_run(overrides, Path(scratch, f"{name}{repeat}"))
            step_s[name].append(per_step_seconds(marks))
            print(
                f"run {repeat + 1}/{args.repeats} {name}: {1000 * step_s[name][-1]:.3f} ms/step, process {process_s:.2f} s ({load()})",
                flush=True,
            )
    print(f"\ntrain.py {' '.join(common)}")
    for name, overrides in variants.items():
        print(
            f"  {name}: {' '.join(overrides) or '(nothing more)'}: {1000 * statistics.median(step_s[name]):.3f} ms per step "
            f"(median of {args.repeats}; runs {', '.join(f'{1000 * seconds:.3f}' for seconds in step_s[name])})"
        )
    print(
        f"  B/A: {statistics.median(step_s['B']) / statistics.median(step_s['A']):.3f} (median of the paired ratios {paired_ratio(step_s['B'], step_s['A']):.3f})"
    )
    print(f"{load()} at the end; {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
