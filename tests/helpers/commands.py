"""Running the repository's entry scripts as a user would: from the repository root, as subprocesses."""

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# what a fresh clone does not have: runs, data, environments, caches
IGNORED_FOLDERS = {".git", ".venv", "logs", "data", "outputs", "multirun", ".pytest_cache", "__pycache__"}

# Small and fast: a few batches, no progress bar, CPU.
TINY = [
    "trainer=cpu",
    "trainer.max_epochs=2",
    "data.batch_size=32",
    "data.val_size=100",
    "data.download=false",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.log_every_n_steps=5",
]

# the shortening overrides that docs/scale.md lists for its commands (tests/test_launchers.py, test_search.py)
SCALE_SHORTENING = [
    "trainer=cpu",
    "debug=limit",
    "trainer.max_epochs=1",
    "data.batch_size=32",
    "data.val_size=100",
    "test=false",
    "data.download=false",
    "callbacks.progress_bar.refresh_rate=0",
]


def fresh_copy(root: Path) -> Path:
    """The repository's files as a clone has them (links to them), without runs, data or environments."""
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in IGNORED_FOLDERS:
            (root / entry.name).symlink_to(entry)
    return root


def activated_environment() -> dict[str, str]:
    """This interpreter's environment, as activated: its scripts (python, tensorboard) first on PATH (one thread per
    process comes from tests/__init__.py)."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }


def run_in_shell(command: str, checkout: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """A command line as a user types it, in `checkout`, with this environment activated."""
    return subprocess.run(
        ["bash", "-c", command],
        cwd=checkout,
        env=activated_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_entry(script: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs an entry script of the repo as a user would, from the repo root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run(
        [sys.executable, script, *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(overrides)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def start(overrides: list[str]) -> subprocess.Popen:
    """train.py with these overrides, started in the background (stderr kept for the failure message)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen(
        [sys.executable, "train.py", *overrides],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until `path` exists; fails if the process ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, (
            f"train.py ended ({process.returncode}) before writing {path}: {process.stderr.read()[-3000:]}"
        )
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)


def files_left(*folders: Path) -> set[str]:
    """Every folder and file below `folders`, and the repo's top level (where run_entry starts a command and Hydra
    would put its outputs/): what a command created shows as the difference of two calls."""
    found = {str(path) for path in REPO.iterdir()}
    for folder in folders:
        found |= {str(path) for path in [folder, *folder.rglob("*")]}
    return found
