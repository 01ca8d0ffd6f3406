"""The fast MNIST recipe over several seeds: test top-1 and whole-command wall time of each run.

    python -m benchmarks.mnist_fast [--seeds 0 1 2 3 4] [--threads 0] [--data-dir data] [train.py overrides ...]

Runs `python train.py experiment=mnist_fast paths.data_dir=DATA seed=S` once per seed, each a fresh process
timed from start to exit (start-up, training, the test of the best checkpoint, writing everything), and
reads each run's test top-1 from its test prediction file (predictions/test-epochNNN.csv, one row per
test image). Prints every run, then the mean and minimum accuracy and the median and maximum wall time,
with the load average before and after each run (the machine may be shared). --threads sets
OMP_NUM_THREADS for the runs (0: torch's default, one thread per core).
"""

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from analysis.prediction_files import read_predictions
from benchmarks.runs import load, timed_run

TARGET = 0.99


def test_top1(run_dir: Path) -> float:
    (path,) = sorted((run_dir / "predictions").glob("test-epoch*.csv"))
    rows = read_predictions(path).rows
    return sum(row["correct"] == "1" for row in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of the runs; 0: torch's default")
    parser.add_argument(
        "--data-dir",
        default="data",
        help="the folder holding MNIST/raw/ (unpacked there from the shipped copy when absent)",
    )
    args, overrides = parser.parse_known_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    overrides = ["experiment=mnist_fast", f"paths.data_dir={args.data_dir}", *overrides]
    accuracies, seconds = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            before = load()
            run_dir = Path(scratch, f"seed{seed}")
            seconds.append(timed_run([*overrides, f"seed={seed}"], run_dir))
            accuracies.append(test_top1(run_dir))
            print(
                f"seed {seed}: test top-1 {100 * accuracies[-1]:.2f}%, {seconds[-1]:.1f} s ({before} before, {load()} after)",
                flush=True,
            )
    print(
        f"\ntrain.py {' '.join(overrides)} seed=S   (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}, {os.cpu_count()} cores)"
    )
    print(
        f"test top-1 over {len(accuracies)} seeds: mean {100 * statistics.mean(accuracies):.2f}%, min {100 * min(accuracies):.2f}% "
        f"({sum(accuracy >= TARGET for accuracy in accuracies)} of {len(accuracies)} at >= {100 * TARGET:.1f}%)"
    )
    print(f"wall time of the whole command: median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s")


if __name__ == "__main__":
    main()
