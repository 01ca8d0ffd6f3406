"""How long the entry point makes a user wait before it answers: python -m benchmarks.startup [--repeats 5] [--repo PATH]

Each command runs as a whole new process, `--repeats` times in turn (so a drift in the machine's load hits all
alike), and is reported as the median of its wall times and as the median ratio to `python -c "import lightning"`
timed in the same round. `--repo` times another checkout (an earlier commit, for a before/after table) with this
interpreter. The first training step is timed by a callback that prints the clock at the first batch and ends
the process there.

    python -m benchmarks.startup                     # this checkout
    python -m benchmarks.startup --repo /tmp/before  # another one, e.g. `git worktree add /tmp/before c2824be`
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_STEP_MARK = "first training step at "


# A Lightning callback that train.py imports through `+callbacks.first_step._target_=startup_probe.FirstStep`: it prints
# the clock at the first training batch and ends the process there. Written to a folder of its own, so that a checkout
# timed with --repo (whose benchmarks/ may lack this file) finds it too.
PROBE = f"""
import os, time
from lightning import Callback

class FirstStep(Callback):
    def on_train_batch_start(self, *args, **kwargs):
        print("{FIRST_STEP_MARK}" + str(time.time()), flush=True)
        os._exit(0)
"""


def commands(log_dir: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (arguments after `python`, extra environment)."""
    quiet = [f"paths.log_dir={log_dir}"]
    return {
        "python -c 'import lightning'": (["-c", "import lightning"], {}),
        "train.py --help": (["train.py", "--help"], {}),
        "train.py --cfg job": (["train.py", "--cfg", "job"], {}),
        "train.py -sc query=bash (one TAB)": (
            ["train.py", "-sc", "query=bash"],
            {"COMP_LINE": "python train.py optimizer.l", "COMP_POINT": "27"},
        ),
        "train.py optimizer.lr=abc (refused)": (["train.py", "optimizer.lr=abc", *quiet], {}),
        "train.py to the first training step": (
            [
                "train.py",
                *quiet,
                "+callbacks.first_step._target_=startup_probe.FirstStep",
                "callbacks.progress_bar.refresh_rate=0",
            ],
            {},
        ),
    }


def timed(arguments: list[str], environment: dict[str, str], repo: Path, probe_dir: str) -> float:
    """Seconds from starting the process to its end, or to the first training step when it prints one."""
    env = {**os.environ, **environment, "PYTHONPATH": probe_dir}
    start = time.time()
    result = subprocess.run([sys.executable, *arguments], cwd=repo, env=env, capture_output=True, text=True)
    end = time.time()
    for line in result.stdout.splitlines():
        if line.startswith(FIRST_STEP_MARK):
            return float(line.removeprefix(FIRST_STEP_MARK)) - start
    expected = 2 if "optimizer.lr=abc" in arguments else 0
    if result.returncode != expected:
        raise SystemExit(f"{' '.join(arguments)} exited {result.returncode}:\n{result.stderr[-2000:]}")
    return end - start


def imports_torch(arguments: list[str], environment: dict[str, str], repo: Path) -> bool:
    env = {**os.environ, **environment}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *arguments], cwd=repo, env=env, capture_output=True, text=True
    )
    return any(line.split("|")[-1].strip() == "torch" for line in result.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose train.py is timed")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as log_dir, tempfile.TemporaryDirectory() as probe_dir:
        Path(probe_dir, "startup_probe.py").write_text(PROBE)
        runs = commands(log_dir)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(options.repeats):
            for name, (arguments, environment) in runs.items():
                times[name].append(timed(arguments, environment, options.repo, probe_dir))
        reference = times["python -c 'import lightning'"]
        print(
            f"{options.repo} ({subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=options.repo, capture_output=True, text=True).stdout.strip()}), median of {options.repeats}, {os.cpu_count()} CPUs\n"
        )
        print("| command | median s | x import lightning | imports torch |")
        print("| --- | ---: | ---: | --- |")
        for name, measured in times.items():
            ratio = statistics.median(ours / theirs for ours, theirs in zip(measured, reference, strict=True))
            torch_loaded = (
                ""
                if "first training step" in name or "import lightning" in name
                else ("yes" if imports_torch(*runs[name], options.repo) else "no")
            )
            print(f"| `{name}` | {statistics.median(measured):.2f} | {ratio:.2f} | {torch_loaded} |")


if __name__ == "__main__":
    main()
