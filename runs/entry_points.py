"""How every entry script starts and ends, importing only Hydra: its run directory, resolvers, Hydra callbacks and exit codes.

Custom: Hydra cannot find the latest run of an experiment, lock a run directory, or remove one whose start failed.
"""

import fcntl
import functools
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from user_errors import USER_ERROR_EXIT_CODE, UserError, replace_whole, writing

log = logging.getLogger(__name__)
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
LOCK_FILE = "run.lock"


def quiet_library_notices() -> None:
    # Lightning's "💡 Tip: ... try installing [litlogger|litmodels]" lines: adverts, not about this run
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda record: "💡 Tip" not in str(record.msg))
    logging.getLogger("onnxscript").setLevel(logging.WARNING)  # the ONNX exporter's progress lines
    # TensorBoard's graph writer has no other way than torch.jit.trace, which torch deprecates
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")  # Lightning's own


def entry_point(config_name: str, positional: Sequence[str] = (), gathered: str = "") -> Callable:
    """`@entry_point("train")`: run as `__main__`, Hydra composes conf/train.yaml with the command line (its bare arguments
    as positional_to_overrides says) and calls the function, ended as exit_on_user_error says."""

    def run_if_main(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
        if task.__module__ != "__main__":
            return task
        register_resolvers()  # the configs use ${run_dir:...} and ${output_dir:...}: registered before Hydra composes
        sys.argv[1:] = positional_to_overrides(sys.argv[1:], positional, gathered)

        @functools.wraps(task)  # Hydra finds conf/ and names the job (train.log) by the script that defines `task`
        def main(cfg: DictConfig) -> Any:
            with exit_on_user_error(discard_new_output_dir):
                quiet_library_notices()
                return task(cfg)

        hydra.main(version_base="1.3", config_path="conf", config_name=config_name)(main)()
        return task

    return run_if_main


_job_failure: str | None = None  # the failure of this process's job, for its status.json


@contextmanager
def exit_on_user_error(on_user_error: Callable[[], None] = lambda: None):
    """A UserError as its message and exit 2, after `on_user_error`; a signal's stop as 128 + its number; a multirun's
    failed job as its status."""
    global _job_failure
    try:
        yield
    except Exception as error:
        if isinstance(error, (MissingMandatoryValue, ConfigKeyError, ConfigAttributeError)) and error.full_key:
            # a value the user left unset (`???`) or removed (`~key`), found only where it is read
            error = UserError(f"{error.full_key} has no value: give {error.full_key}=VALUE on the command line.")
        if isinstance(error, UserError):
            on_user_error()
        # a signal's stop: callbacks.resume.TrainingStopped, known by its signum (importing it would import Lightning)
        if (signum := getattr(error, "signum", None)) is not None:
            print(f"stopped: {error}", file=sys.stderr)
            raise SystemExit(128 + signum) from None
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:  # the sweep goes on
            _job_failure = failure_reason(error)
            log.error(f"This job failed: {_job_failure}", exc_info=None if isinstance(error, UserError) else error)
        elif isinstance(error, UserError):
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT_CODE) from None
        else:
            raise


def failure_reason(error: BaseException) -> str:
    """One line: a UserError's sentence, else the exception's type and message (where it was raised, if it has none)."""
    message = " ".join(str(error).split())
    if message:
        return message if isinstance(error, UserError) else f"{error.__class__.__name__}: {message}"
    frames = traceback.extract_tb(error.__traceback__)
    where = f" in {frames[-1].name} ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{error.__class__.__name__} (without a message) raised{where}; the job's train.log has the traceback."


def quoted(value: str) -> str:
    """`value` as a single-quoted Hydra override value: paths with spaces, commas or '=' stay one string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def positional_to_overrides(arguments: Sequence[str], keys: Sequence[str], gathered: str = "") -> list[str]:
    """Bare arguments (not key=value, a flag or a flag's value such as `job` in `--cfg job`) as `key='A'`, one per key in
    order; with `gathered` (predict.py's "image"), the rest and each `image=PATH` as one `images=[...]` (a key once)."""
    rewritten, values, keys = [], [], list(keys)
    for argument in arguments:
        not_bare = "=" in argument or argument.startswith("-") or bool(rewritten) and rewritten[-1].startswith("-")
        if gathered and argument.startswith(f"{gathered}="):
            values.append(argument.removeprefix(f"{gathered}="))
        elif not_bare or not (keys or gathered):
            rewritten.append(argument)
        elif keys:
            rewritten.append(f"{keys.pop(0)}={quoted(argument)}")
        else:
            values.append(argument)
    return rewritten + ([f"{gathered}s=[{','.join(map(quoted, values))}]"] if values else [])


def launcher_run_name() -> str | None:
    """`torchrun-<rdzv id>` or `slurm-<job id>`: every process of a launched job, on every node, picks the same folder."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id == "none" and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun's default: every job would share it
        raise UserError(
            "torchrun was started without --rdzv-id, so its processes cannot agree on a run directory: give every node "
            "the same --rdzv-id=NAME (a job id), or name the directory with hydra.run.dir=PATH."
        )
    if run_id not in (None, "none"):
        if not re.fullmatch(r"[\w.-]+", run_id):
            raise UserError(
                f"torchrun's --rdzv-id={run_id!r} cannot name a run directory: use letters, digits, '.', '_' and '-' only."
            )
        return f"torchrun-{run_id}"
    if run_id or "SLURM_JOB_ID" not in os.environ:  # not under SLURM: no need to import Lightning's detector
        return None
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return f"slurm-{SLURMEnvironment.job_id()}" if SLURMEnvironment.detect() and SLURMEnvironment.job_id() else None


def global_rank() -> int:
    """This process's global rank from the variables Lightning reads, in its order (its reader takes seconds to import)."""
    variables = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
    return next((int(os.environ[variable]) for variable in variables if variable in os.environ), 0)


def experiment_identity(cfg: DictConfig | Path) -> dict[str, Any]:
    """The config as written (unresolved: nothing in a stored one is evaluated), without the keys that say how to start."""
    plain = OmegaConf.to_container(OmegaConf.load(cfg) if isinstance(cfg, Path) else cfg, resolve=False)
    return {key: value for key, value in plain.items() if key not in ("hydra", "resume", "ckpt_path")}


def sweep_identity(overrides: Any) -> list[str]:
    """A sweep's command line (or its multirun.yaml's, read as plain YAML: an interpolation stays text), how to start aside."""
    if isinstance(overrides, Path):
        overrides = yaml.safe_load(overrides.read_text())["hydra"]["overrides"]["task"]
    return sorted(str(item) for item in overrides or [] if not str(item).startswith(("resume=", "ckpt_path=")))


def latest(root: Path, marker: str | Path, record: str, identity: Callable[[Path], Any], wanted: Any) -> Path | None:
    """The folder below `root` with the newest `marker` file among those whose `record` file has the identity `wanted`."""
    for path in sorted(root.glob(f"*/{marker}"), key=lambda path: path.stat().st_mtime, reverse=True):
        folder = root / path.relative_to(root).parts[0]
        try:
            if identity(folder / record) == wanted:
                return folder
        except (OSError, ValueError, AttributeError, KeyError, TypeError, OmegaConfBaseException, yaml.YAMLError):
            log.warning(f"resume=true: {folder / record} cannot be read; that folder is not considered.")
    return None


_chosen: dict[tuple, str] = {}  # Hydra resolves hydra.run.dir and hydra.sweep.dir more than once: the answer stays
_created: dict[Path, Path] = {}  # output folders this process created -> their highest new folder


def _note_if_new(folder: Path) -> None:
    highest = folder = folder.resolve()
    while not highest.parent.exists():
        highest = highest.parent
    if not folder.exists():
        _created[folder] = highest


def resolve_run_dir(resume: bool, runs_root: str, new_run_name: str, _root_: DictConfig) -> str:
    """hydra.run.dir, created here: `<runs_root>/<launcher id or time>`, or with resume=true the experiment's latest."""
    if (key := ("run", bool(resume), runs_root, new_run_name)) in _chosen:
        return _chosen[key]
    with exit_on_user_error():
        wanted = experiment_identity(_root_) if resume else None
        run = resume and latest(Path(runs_root), LAST_CHECKPOINT, ".hydra/config.yaml", experiment_identity, wanted)
        chosen = Path(run or f"{runs_root}/{launcher_run_name() or new_run_name}")
        _note_if_new(chosen)
        with writing(f"the run directory {chosen}"):
            chosen.mkdir(parents=True, exist_ok=True)
            if not os.access(chosen, os.W_OK | os.X_OK):
                raise PermissionError("no permission to write in it")
    _chosen[key] = str(chosen)
    return _chosen[key]


def resolve_sweep_dir(resume: bool, sweeps_root: str, new_sweep_name: str, _root_: DictConfig) -> str:
    """hydra.sweep.dir: a new folder, or with resume=true the latest sweep of the same command line."""
    if (key := ("sweep", bool(resume), sweeps_root, new_sweep_name)) in _chosen:
        return _chosen[key]
    wanted = sweep_identity(OmegaConf.select(_root_, "hydra.overrides.task"))
    earlier = resume and latest(Path(sweeps_root), "multirun.yaml", "multirun.yaml", sweep_identity, wanted)
    if earlier:
        log.info(f"resume=true: continuing the sweep {earlier}")
    _chosen[key] = str(earlier or f"{sweeps_root}/{new_sweep_name}")
    return _chosen[key]


def resolve_output_dir(source: str | None, out: str) -> str:
    """hydra.run.dir of report.py and sweep_summary.py: `out`, checked before Hydra creates it inside `source`."""
    with exit_on_user_error():
        expected = (
            "a directory that train.py wrote, a run (logs/train/runs/<run>) or a sweep (logs/train/multiruns/<sweep>)"
        )
        if not source:
            raise UserError(f"No folder given: pass {expected}, as the first argument.")
        if not Path(source).is_dir():
            raise UserError(f"No folder at {source}: pass {expected}.")
        if Path(out).exists() and not Path(out).is_dir():
            raise UserError(f"out={out} is a file: give a folder to write the report into.")
    _note_if_new(Path(out))
    return out


# what a command writes as its results: checkpoints, predictions, metrics, exported models and their contract
RESULT_SUFFIXES = (".ckpt", ".csv", ".json", ".onnx", ".pt2", ".ts")


def discard_new_output_dir() -> None:
    """Remove the output folder this process created, unless it holds a result of the command."""
    folder = Path(HydraConfig.get().runtime.output_dir).resolve()
    results = (path for path in folder.rglob("*") if path.suffix in RESULT_SUFFIXES and ".hydra" not in path.parts)
    if folder in _created and not any(results):
        shutil.rmtree(_created[folder], ignore_errors=True)


def tensorboard_run_name(mode: object, override_dirname: str) -> str:
    """A multirun job's TensorBoard version folder: its overrides (TensorBoard names a run by its folder)."""
    return override_dirname.replace("/", "_").replace(os.sep, "_")[:200] if str(mode).endswith("MULTIRUN") else ""


def register_resolvers() -> None:
    """The resolvers the configs use, registered by each entry script before Hydra composes (entry_point)."""
    for name, resolver in {
        "run_dir": resolve_run_dir,
        "sweep_dir": resolve_sweep_dir,
        "output_dir": resolve_output_dir,
        "on_rank_zero": lambda value, otherwise=None: value if global_rank() == 0 else otherwise,
        "rank_suffix": lambda: "" if global_rank() == 0 else f".rank{global_rank()}",
        "tensorboard_run_name": tensorboard_run_name,
    }.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


def lock_run_directory(run_dir: Path) -> int:
    """An OS lock (flock) on `<run_dir>/run.lock`, released by the kernel however its process ends; its descriptor."""
    descriptor = os.open(Path(run_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(descriptor, 4096).decode(errors="replace").strip() or "a process without its pid written yet"
        os.close(descriptor)
        raise UserError(
            f"Another process ({holder}) is running in {run_dir}: wait for it to end or stop it, then run this command again "
            "(with resume=true it then continues from that run's last.ckpt)."
        ) from None
    os.ftruncate(descriptor, 0)
    holder = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
    os.pwrite(descriptor, holder.encode(), 0)
    return descriptor


def _write_status(config: DictConfig, status: dict[str, Any]) -> None:
    replace_whole(Path(config.hydra.runtime.output_dir) / "status.json", json.dumps(status, indent=2).encode())


class RunCallbacks(Callback):
    """Hydra callback: the run directory locked at its start; a multirun's status and summary."""

    def __init__(self) -> None:
        self._ended: dict[Path, dict[str, Any]] = {}  # the summary rows of ended jobs, not read again

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_user_error():
            if global_rank() != 0:  # another process of a DDP run: rank 0 holds the lock for all of them
                return
            run_dir = Path(config.hydra.run.dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            lock_run_directory(run_dir)  # held until this process ends, which releases it however it ends
        for path in (run_dir / "checkpoints").glob(".*.ckpt.*.tmp"):  # checkpoints/loading.py's, of a killed write:
            path.unlink(missing_ok=True)  # no live write can own them while we hold the lock

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN and global_rank() == 0:
            self._started = time.time()
            _write_status(config, {"status": "running", "started": self._started})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        global _job_failure
        if config.hydra.mode != RunMode.MULTIRUN or global_rank() != 0:
            return
        from analysis.run_records import COMPLETED, FAILED
        from analysis.sweep_table import write_summary

        # a job's exception ends in exit_on_user_error (entry_point), which records it: Hydra sees every job return
        failed = {"status": FAILED, "reason": _job_failure}
        ended = failed if _job_failure else {"status": COMPLETED, "result": job_return.return_value}  # a number or None
        _write_status(config, {"started": self._started, "wall_s": time.time() - self._started, **ended})
        _job_failure = None
        write_summary(Path(config.hydra.sweep.dir), self._ended)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """`N of M jobs failed, ...` and exit 2: failed jobs returned normally (exit_on_user_error)."""
        from analysis.run_records import FAILED
        from analysis.sweep_table import job_dirs, write_summary

        jobs = job_dirs(Path(config.hydra.sweep.dir))
        if global_rank() != 0 or not jobs:
            return
        markdown_path, csv_path, markdown = write_summary(Path(config.hydra.sweep.dir), self._ended)
        log.info(f"Sweep summary: {markdown_path} and {csv_path}\n{markdown}")
        if failed := sum(row["status"] == FAILED for row in self._ended.values()):  # every ended job's row
            print(f"{failed} of {len(jobs)} jobs failed, reasons in {markdown_path}", file=sys.stderr, flush=True)
            raise SystemExit(USER_ERROR_EXIT_CODE)
