"""What the timing, prediction-file and validation-figure callbacks cost: whole train.py runs with and without them.

    python -m benchmarks.callback_overhead [--repeats 3] [--data-dir data] [train.py overrides ...]

Runs train.py alternately (ABBA) without the three callbacks (the baseline) and with them (the default), with
the same seed, data and settings, each run a fresh process timed from start to exit, and prints the
median wall time of each, their ratio, and the per-epoch figures of the last run's timing.csv.
Defaults: LeNet-5 on the real MNIST (the shipped copy), 2 epochs on the CPU, no test.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.runs import REPO, alternating, timed_run

DEFAULTS = [
    "trainer=cpu",
    "trainer.max_epochs=2",
    "data.download=false",
    "test=false",
    "callbacks.progress_bar.refresh_rate=0",
]
WITHOUT = ["~callbacks.timing", "~callbacks.predictions", "~callbacks.validation_figures"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default="data", help="the folder holding MNIST/raw/ (unpacked there from the shipped copy when absent)")
    args, overrides = parser.parse_known_args()
    overrides = [*DEFAULTS, f"data.data_dir={args.data_dir}", *overrides]
    seconds: dict[str, list[float]] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat, variant in alternating(list(seconds), args.repeats):
            run_dir = Path(scratch, f"{variant}{repeat}")
            seconds[variant].append(timed_run(overrides + (WITHOUT if variant == "without" else []), run_dir))
            print(f"run {repeat + 1}/{args.repeats} {variant:>7} the callbacks: {seconds[variant][-1]:.2f} s", flush=True)
        timing = (Path(scratch, f"with{args.repeats - 1}") / "timing.csv").read_text()
    baseline, measured = statistics.median(seconds["without"]), statistics.median(seconds["with"])
    print(f"\ntrain.py {' '.join(overrides)}")
    print(f"median wall time without the callbacks {baseline:.2f} s, with them {measured:.2f} s: ratio {measured / baseline:.3f}")
    print(f"timing.csv of the last run with them:\n{timing}")


if __name__ == "__main__":
    main()
