"""How the benchmarks run their variants and compare them: fresh train.py processes, alternating order, paired ratios.

Every benchmark that compares variants runs each in a process of its own, goes round them in alternating
order (ABBA: A B, B A, A B, ...) so that a drift in the machine's load hits all alike, and reports medians
and the median of the paired ratios (each repeat's variant against the same repeat's baseline), which such
a drift does not move.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def alternating(variants: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """(repeat, variant) in ABBA order: the variants in order in even repeats, reversed in odd ones."""
    for repeat in range(repeats):
        for variant in variants if repeat % 2 == 0 else reversed(variants):
            yield repeat, variant


def paired_ratio(measured: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of the repeats' ratios, each repeat's measurement against the same repeat's baseline."""
    return statistics.median(ours / theirs for ours, theirs in zip(measured, baseline, strict=True))


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def timed_run(overrides: list[str], run_dir: Path) -> float:
    """Runs `python train.py overrides` with its run directory at run_dir; returns its wall time from start to exit."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"train.py {' '.join(overrides)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def instrumented_run(wrapper: str, arguments: list[str], result_path: Path, threads: int, checkout: Path = REPO) -> dict:
    """Runs `python -c wrapper result_path arguments...` in `checkout` (whose code then comes first on sys.path),
    with OMP_NUM_THREADS=threads, and returns what the wrapper wrote to result_path (JSON)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run([sys.executable, "-c", wrapper, str(result_path), *arguments], cwd=checkout, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not result_path.exists():
        raise SystemExit(f"{' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result_path.read_text())
