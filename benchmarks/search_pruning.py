"""The same Optuna search on the real MNIST with and without pruning: best val top-1, trials pruned, wall time.

    python -m benchmarks.search_pruning [--trials 20] [--out DIR] [search.py overrides ...]

Runs `python search.py hparams_search=mnist_optuna` twice, each a fresh process timed from start to exit, with the
same sampler seed and the same short trials (SETTINGS): once with the search's median pruner, once with
`search.pruner=null`. Each search is a study of its own below --out (a temporary folder by default). Prints a
Markdown table: trials complete, pruned and failed, the best trial's val top-1 and parameters, the wall time.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from benchmarks.runs import REPO, load

# short trials: 6 epochs of 30 batches (3,840 images), the whole validation split (5,000 images) after each
SETTINGS = [
    "hparams_search=mnist_optuna",
    "search.sampler.seed=0",
    "trainer.max_epochs=6",
    "trainer.limit_train_batches=30",
    "test=false",
    "callbacks.progress_bar.refresh_rate=0",
]
SEARCHES = {"median pruner (the default)": [], "no pruning": ["search.pruner=null"]}


def run_search(name: str, overrides: list[str], out: Path) -> dict:
    log_dir = out / name.split(" ")[0]
    command = [sys.executable, "search.py", *overrides, f"paths.log_dir={log_dir}"]
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    storage = f"sqlite:///{log_dir}/search/mnist_optuna/optuna.db"
    study = optuna.load_study(study_name="mnist_optuna", storage=storage)
    states = [trial.state for trial in study.trials]
    best = study.best_trial
    return {
        "complete": states.count(optuna.trial.TrialState.COMPLETE),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "best": best.value,
        "params": ", ".join(
            f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}" for key, value in best.params.items()
        ),
        "number": best.number,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--out", type=Path, default=None, help="where the studies are kept (default: a temporary folder)"
    )
    args, overrides = parser.parse_known_args()
    settings = [*SETTINGS, f"search.n_trials={args.trials}", *overrides]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        out = (args.out or Path(scratch)).resolve()
        for name, extra in SEARCHES.items():
            before = load()
            result = run_search(name, [*settings, *extra], out)
            print(f"{name}: {result} (load {before} before, {load()} after)", flush=True)
            rows.append((name, result))
    print(f"\npython search.py {' '.join(settings)} [search.pruner=null]\n")
    print("| search | complete | pruned | failed | best val top-1 | best trial | wall time |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        print(
            f"| {name} | {r['complete']} | {r['pruned']} | {r['failed']} | {100 * r['best']:.2f}% | "
            f"{r['number']} ({r['params']}) | {r['seconds'] / 60:.1f} min |"
        )


if __name__ == "__main__":
    main()
