"""Every shell command in README.md and docs/*.md, run exactly as written, in a fresh copy of the repository.

The only change made to a command is an appended shortening suffix from SHORTENING (fewer batches, epochs or
trials). A command that needs a GPU or the network is run up to the one sentence that says so (exit code 2).
`<run>` and `<sweep>` stand for the latest run and sweep directory the earlier commands of the same page wrote.
Only ```bash blocks hold commands; a script to save as a file (a SLURM job script, say) goes in a ```sh block.
"""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.helpers.commands import REPO, activated_environment, fresh_copy, run_in_shell

# pages whose commands their own tests run verbatim (they need two processes at once, or a launcher's setup)
TESTED_ELSEWHERE = {"scale.md": "tests/test_launchers.py, tests/test_search.py, tests/test_multinode.py"}
DOCUMENTS = [
    REPO / "README.md",
    *sorted(path for path in (REPO / "docs").glob("*.md") if path.name not in TESTED_ELSEWHERE),
]
# appended to every command that starts with (or contains) the key; the one documented place (README, Quick start)
SHORTENING = {
    "python train.py": "debug=limit",
    "python compare.py": "num_images=4",
    "python search.py": "debug=limit",
    "search.py": "search.n_trials=2",
}
# what a command that this machine cannot run must answer instead, in one sentence
NEEDS_A_GPU = (
    "trainer=gpu",
    "trainer=ddp ",
    "trainer.accelerator=gpu",
    "trainer.devices=4",
    "benchmarks.gpu_check --out",
)
GPU_ANSWERS = ("asks for a GPU but this machine has none", "asks for more devices than the")
NEEDS_THE_NETWORK = ("data=tiny_imagenet", "experiment=tiny_imagenet_resnet18", "model.pretrained=true")
NETWORK_ANSWERS = ("could not be downloaded", "cannot be downloaded", "could not download")
NOT_RUN_HERE = (
    "python -m pytest",
    "pip install",
    "sbatch ",
    "srun ",
    "torchrun ",
    "hydra/launcher=slurm",
)  # the suite, installs, clusters
# minutes each on 2 CPU cores: run by `pytest -m slow` (a page whose every command is heavy is slow as a whole)
SLOW_COMMANDS = (
    "benchmarks.device_speed",
    "model=resnet18 trainer.max_epochs=1",
    "model=resnet18 data=mnist model.weights_path=",
    "model=resnet18 model.weights_path=",
)
SLOW_PAGES = ("devices_and_sweeps.md",)


def commands_in(document: Path) -> list[str]:
    """The commands of the document's ```bash blocks: one a line, `\\`-continued lines joined, comments dropped."""
    commands, block, inside = [], [], False
    for line in document.read_text().splitlines():
        if line.strip().startswith("```"):
            if inside:
                commands += _commands_of(block)
            inside, block = line.strip() == "```bash", []
        elif inside:
            block.append(line)
    return commands


def _commands_of(lines: list[str]) -> list[str]:
    joined = " ".join(lines).replace("\\ ", " ") if any(line.rstrip().endswith("\\") for line in lines) else None
    found = []
    for line in [joined] if joined else lines:
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            found.append(" ".join(line.split()))
    return found


def cases() -> list:
    params = []
    for document in DOCUMENTS:
        for number, command in enumerate(commands_in(document)):
            # the README's commands in the default suite; the topic pages' (dozens of runs) in the slow one
            slow = (
                document.name != "README.md"
                or document.name in SLOW_PAGES
                or any(marker in command for marker in SLOW_COMMANDS)
            )
            marks = [pytest.mark.slow] if slow else []
            params.append(
                pytest.param(document.name, number, command, id=f"{document.name}:{number}:{command[:60]}", marks=marks)
            )
    return params


@pytest.fixture(scope="module")
def checkouts() -> dict[str, Path]:
    """One fresh copy of the repository per document (its commands run in order, sharing their runs)."""
    return {}


def shortened(command: str) -> str:
    parts = [part.strip() for part in command.split("&&")]
    result = []
    for part in parts:
        suffixes = [
            suffix
            for key, suffix in SHORTENING.items()
            if (part.startswith(key) or f" {key}" in part) and suffix.split("=")[0] + "=" not in part
        ]
        result.append(" ".join([part, *suffixes]))
    return " && ".join(result)


def filled_in(command: str, checkout: Path) -> str:
    """<run> and <sweep> after logs/<task>/runs/ or logs/<task>/multiruns/: the newest directory there."""

    def newest(match: re.Match) -> str:
        folder = checkout / match.group(1)
        runs = sorted(folder.iterdir(), key=lambda path: path.stat().st_mtime) if folder.is_dir() else []
        assert runs, f"{command}: no earlier command of this page wrote a directory in {folder}"
        return f"{match.group(1)}/{runs[-1].name}"

    return re.sub(r"(logs/[\w-]+/(?:runs|multiruns))/<(?:run|sweep)>", newest, command)


@pytest.mark.parametrize("document, number, command", cases())
def test_documented_command_works_as_written(document, number, command, checkouts, tmp_path_factory):
    command = re.sub(r"^pip install [^&]*&&\s*", "", command)  # installed already: this suite runs in that environment
    if any(marker in command for marker in NOT_RUN_HERE):
        pytest.skip(
            "the test suite itself, or a cluster launcher (docs/devices_and_sweeps.md tests those in simulation)"
        )
    if document not in checkouts:
        checkouts[document] = fresh_copy(tmp_path_factory.mktemp("clone") / "classic-dl")
    checkout = checkouts[document]
    if command.startswith("tensorboard "):
        return check_server_starts(command, checkout, "TensorBoard")
    if command.startswith("optuna-dashboard "):
        return check_server_starts(command, checkout, "Listening on")
    result = run_in_shell(filled_in(shortened(command), checkout), checkout)
    output = result.stdout + result.stderr
    if any(marker in command for marker in NEEDS_A_GPU) and not _has_gpu():
        assert result.returncode == 2 and any(answer in output for answer in GPU_ANSWERS), output[-3000:]
    elif any(marker in command for marker in NEEDS_THE_NETWORK):
        assert result.returncode == 2 and any(answer in output for answer in (*NETWORK_ANSWERS, *GPU_ANSWERS)), output[
            -3000:
        ]
    else:
        assert result.returncode == 0, f"{command} exited {result.returncode}:\n{output[-4000:]}"
        if command.startswith("python train.py -m "):
            check_sweep_wrote_every_job(command, checkout)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def check_sweep_wrote_every_job(command: str, checkout: Path) -> None:
    """A grid sweep writes one job directory per combination, each with its status, and summary.md beside them."""
    jobs = 1
    for override in command.split()[3:]:
        if "=" in override and "," in override.split("=", 1)[1]:
            jobs *= len(override.split("=", 1)[1].split(","))
    sweep = max((checkout / "logs" / "train" / "multiruns").iterdir(), key=lambda path: path.stat().st_mtime)
    assert (sweep / "summary.md").is_file(), sweep
    assert len(list(sweep.glob("*/status.json"))) == jobs, sorted(path.name for path in sweep.iterdir())


def check_server_starts(command: str, checkout: Path, announcement: str) -> None:
    """A server (TensorBoard, optuna-dashboard): it must come up and say where it serves; it is then stopped."""
    server = subprocess.Popen(
        shlex.split(command),
        cwd=checkout,
        env=activated_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in server.stdout:
            if announcement in line and "http://" in line:
                return
        pytest.fail(f"{command} ended without serving (exit {server.wait()})")
    finally:
        server.kill()
        server.wait()


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
