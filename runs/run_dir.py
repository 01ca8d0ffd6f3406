"""The run directory: its name from the launcher's environment, or the latest run of the same experiment.

What a process launcher tells every process it starts: the job's id (for one run directory per job) and the process's global rank.

torchrun sets TORCHELASTIC_RUN_ID (its --rdzv-id, the same on every node) and RANK; SLURM sets SLURM_JOB_ID
(kept when the job is requeued) and SLURM_PROCID. Lightning reads the same variables for the rendezvous.

Choosing the run directory (hydra.run.dir): a new one, or with `resume=true` the latest run of the same experiment.

`resume=true` continues that run in its own directory, from its last.ckpt.

Two runs are "the same experiment" when their composed configs are equal apart from `resume` and
`ckpt_path` (compared before interpolation, so the run directory's timestamp does not count): the same
task, groups and overrides, however they were spelt or ordered on the command line. Among those that
have a `checkpoints/last.ckpt`, the one that saved it last is continued.

The run directory has to be chosen before Hydra creates one, so it is an OmegaConf resolver used by
`hydra.run.dir` (conf/hydra/default.yaml); Hydra then writes the config and appends train.log there,
TensorBoard adds an event file beside the earlier ones, and every callback finds its earlier files.

report.py and sweep_summary.py write into a folder of what they read instead (`${output_dir:...}`): it is
checked and remembered the same way, before Hydra creates it, so that a refused start leaves nothing behind.
"""

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runs.entry_points import as_user_error, exit_on_user_error
from user_errors import UserError

# the run id that torchrun uses when --rdzv-id is not given: every job would share it
TORCHRUN_DEFAULT_RUN_ID = "none"


def launcher_run_name() -> str | None:
    """`torchrun-<rdzv id>` or `slurm-<job id>` when a launcher started this process, else None (a new timestamp)."""
    with exit_on_user_error():  # called while Hydra resolves hydra.run.dir, which would report it with a traceback
        return _launcher_run_name()


def _launcher_run_name() -> str | None:
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id is not None:
        if run_id == TORCHRUN_DEFAULT_RUN_ID:
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise UserError(
                    "torchrun was started without --rdzv-id, so its processes cannot agree on a run directory: give every node "
                    "the same --rdzv-id=NAME (a job id), or name the directory with hydra.run.dir=PATH."
                )
            return None
        if not re.fullmatch(r"[\w.-]+", run_id):
            raise UserError(
                f"torchrun's --rdzv-id={run_id!r} cannot name a run directory: use letters, digits, '.', '_' and '-' only."
            )
        return f"torchrun-{run_id}"
    if "SLURM_JOB_ID" not in os.environ:  # not under SLURM: no need to import Lightning's detector
        return None
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if SLURMEnvironment.detect() and SLURMEnvironment.job_id() is not None:
        return f"slurm-{SLURMEnvironment.job_id()}"
    return None


def global_rank() -> int:
    """This process's global rank as its launcher set it (0 when started by hand), from the variables Lightning reads,
    in its order: read here because importing Lightning's reader takes seconds, before Hydra has started the job."""
    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if variable in os.environ:
            return int(os.environ[variable])
    return 0


def on_rank_zero(value, otherwise=None):
    """Resolver `${on_rank_zero:A,B}`: A in global rank 0, B in the other processes (what only one process may write)."""
    return value if global_rank() == 0 else otherwise


def rank_suffix() -> str:
    """Resolver `${rank_suffix:}`: "" in global rank 0, ".rank<N>" in the others (names of per-rank files)."""
    rank = global_rank()
    return "" if rank == 0 else f".rank{rank}"


log = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
# settings that say how to start, not what is trained
NOT_PART_OF_THE_EXPERIMENT = ("hydra", "resume", "ckpt_path")


def experiment_identity(cfg: DictConfig) -> dict[str, Any]:
    """The config as written (interpolations unresolved), without the keys that do not define the experiment."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    return {key: value for key, value in plain.items() if key not in NOT_PART_OF_THE_EXPERIMENT}


def latest_run_of(cfg: DictConfig, runs_root: Path) -> Path | None:
    """The run directory below `runs_root` of the same experiment as `cfg` whose last.ckpt is the newest."""
    wanted = experiment_identity(cfg)
    candidates = sorted(runs_root.glob(f"*/{LAST_CHECKPOINT}"), key=lambda path: path.stat().st_mtime, reverse=True)
    for last in candidates:
        run = last.parent.parent
        stored = run / ".hydra" / "config.yaml"
        try:  # compared unresolved (experiment_identity): nothing in the file is evaluated
            same = stored.is_file() and experiment_identity(OmegaConf.load(stored)) == wanted
        except (OSError, ValueError, AttributeError, OmegaConfBaseException, yaml.YAMLError):
            log.warning(f"resume=true: {stored} cannot be read as a run's config; that run is not considered.")
            continue
        if same:
            return run
    return None


def sweep_identity(task_overrides: Any) -> list[str]:
    """A multirun's command line without the keys that say how to start: two sweeps with the same one are the same sweep."""
    return sorted(
        str(override) for override in task_overrides or [] if not str(override).startswith(("resume=", "ckpt_path="))
    )


def latest_sweep_of(cfg: DictConfig, sweeps_root: Path) -> Path | None:
    """The sweep directory below `sweeps_root` of the same command line as `cfg`'s (its multirun.yaml, which Hydra's
    sweeper writes first), the newest."""
    wanted = sweep_identity(OmegaConf.select(cfg, "hydra.overrides.task"))
    for multirun in sorted(sweeps_root.glob("*/multirun.yaml"), key=lambda path: path.stat().st_mtime, reverse=True):
        try:  # read as plain YAML: an interpolation in the file is text here, never evaluated
            recorded = (yaml.safe_load(multirun.read_text()) or {}).get("hydra", {}).get("overrides", {}).get("task")
        except (OSError, ValueError, AttributeError, yaml.YAMLError):
            log.warning(f"resume=true: {multirun} cannot be read as a sweep's record; that sweep is not considered.")
            continue
        if isinstance(recorded, list) and sweep_identity(recorded) == wanted:
            return multirun.parent
    return None


_chosen_run_dirs: dict[tuple[bool, str, str], str] = {}
# run directories this process created (not continued with resume=true) -> the highest of their folders it created:
# what a failed start removes
_created_run_dirs: dict[Path, Path] = {}


def resolve_run_dir(resume: bool, runs_root: str, new_run_name: str, _root_: DictConfig) -> str:
    """hydra.run.dir: a new `<runs_root>/<new_run_name>`, or with resume=true the latest run of this experiment.

    Started by torchrun or SLURM, the new run is named after the launcher's job id instead of the time
    (runs/run_dir.py): every process of the job, on every node, then picks the same directory.
    Remembered per arguments: Hydra resolves the key more than once, the answer must not change.
    """
    key = (bool(resume), runs_root, new_run_name)
    if key not in _chosen_run_dirs:
        run = latest_run_of(_root_, Path(runs_root)) if resume else None
        chosen = str(run) if run is not None else f"{runs_root}/{launcher_run_name() or new_run_name}"
        with exit_on_user_error():  # here, before Hydra creates it and reports a failure with a traceback
            if not Path(chosen).exists():
                _created_run_dirs[Path(chosen).resolve()] = _highest_new_folder(Path(chosen).resolve())
            _create_writable(Path(chosen))
        _chosen_run_dirs[key] = chosen
    return _chosen_run_dirs[key]


def resolve_sweep_dir(resume: bool, sweeps_root: str, new_sweep_name: str, _root_: DictConfig) -> str:
    """hydra.sweep.dir: a new `<sweeps_root>/<new_sweep_name>`, or with resume=true the latest sweep of the same
    command line, whose jobs (numbered as before) then each continue from their own last.ckpt. Remembered: Hydra
    resolves it first with the sweep's command line, then again in each job, whose overrides are the job's own."""
    key = (bool(resume), sweeps_root, f"sweep {new_sweep_name}")
    if key not in _chosen_run_dirs:
        earlier = latest_sweep_of(_root_, Path(sweeps_root)) if resume else None
        if earlier is not None:
            log.info(f"resume=true: continuing the sweep {earlier}")
        _chosen_run_dirs[key] = str(earlier) if earlier is not None else f"{sweeps_root}/{new_sweep_name}"
    return _chosen_run_dirs[key]


def _highest_new_folder(folder: Path) -> Path:
    """The highest folder of `folder`'s path that does not exist yet (`folder` itself when its parent exists)."""
    new = folder
    while not new.parent.exists():
        new = new.parent
    return new


def _create_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"no permission to write in {folder}")
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(
            f"Cannot write the run directory {folder} ({reason}): point paths.log_dir at a folder you can write to."
        ) from error


@contextmanager
def discarded_if_nothing_was_trained(run_dir: str) -> Iterator[None]:
    """On a UserError, remove the run directory this process created if it holds no result of the command (a
    checkpoint, predictions, an export: RESULT_SUFFIXES): a start that failed on a wrong setting, a wrong file or missing data leaves no empty run
    behind, while a command that wrote results before its error (predictions, a checkpoint, an export) keeps them.
    Continued runs are never removed."""
    try:
        yield
    except Exception as error:
        if not isinstance(as_user_error(error), UserError):
            raise
        folder = Path(run_dir).resolve()
        if folder in _created_run_dirs and not any(map(_written_by_the_command, folder.rglob("*"))):
            shutil.rmtree(_created_run_dirs[folder], ignore_errors=True)
        raise


# what a command writes as its results: checkpoints, prediction and metric files, exported models with their contract
RESULT_SUFFIXES = (".ckpt", ".csv", ".json", ".onnx", ".pt2", ".ts")


def _written_by_the_command(path: Path) -> bool:
    """A result the command wrote before its error (not Hydra's record, a log, or events of a start that failed)."""
    return path.is_file() and ".hydra" not in path.parts and path.suffix in RESULT_SUFFIXES


# folders report.py and sweep_summary.py write into (their hydra.run.dir) -> the highest one of them that is new, or None
_new_output_dirs: dict[Path, Path | None] = {}


def resolve_output_dir(source: str | None, out: str) -> str:
    """hydra.run.dir of report.py and sweep_summary.py: `out`, the folder they write into, from what they read in `source`.

    Hydra creates it, parents included, before the task runs, and by default it lies inside `source`: a `source`
    that is not a folder is refused here, before Hydra would create it, and the part of `out` that does not exist
    yet is remembered, for discarded_on_user_error. Remembered per `out`: Hydra resolves the key more than once.
    """
    with exit_on_user_error():  # here, before Hydra creates the folder and reports a failure with a traceback
        expected = (
            "a directory that train.py wrote, a run (logs/train/runs/<run>) or a sweep (logs/train/multiruns/<sweep>)"
        )
        if not source:
            raise UserError(f"No folder given: pass {expected}, as the first argument.")
        if not Path(source).is_dir():
            raise UserError(f"No folder at {source}: pass {expected}.")
    folder = Path(out).resolve()
    with exit_on_user_error():
        if folder.exists() and not folder.is_dir():
            raise UserError(
                f"out={out} is a file: give a folder to write the report into (a new one, or one of yours)."
            )
    if folder not in _new_output_dirs:
        _new_output_dirs[folder] = None if folder.exists() else _highest_new_folder(folder)
    return out


@contextmanager
def discarded_on_user_error(out: str) -> Iterator[None]:
    """On a UserError, remove the folders that Hydra created for `out` (resolve_output_dir): a refused report leaves none."""
    try:
        yield
    except UserError:
        new = _new_output_dirs.get(Path(out).resolve())
        if new is not None:
            shutil.rmtree(new, ignore_errors=True)
        raise


def tensorboard_run_name(mode: object, override_dirname: str) -> str:
    """The TensorBoard logger's version folder: in a multirun the job's overrides (TensorBoard names a run by its
    folder, and a job's number alone says nothing), else none (a run's events stay in <run>/tensorboard)."""
    if not str(mode).endswith("MULTIRUN") or not override_dirname:
        return ""
    return override_dirname.replace("/", "_").replace(os.sep, "_")[:200]


def register_resolvers() -> None:
    """The resolvers the configs use: ${run_dir:...}, ${output_dir:...}, ${on_rank_zero:...}, ${rank_suffix:},
    ${tensorboard_run_name:...}."""
    resolvers = {
        "run_dir": resolve_run_dir,
        "sweep_dir": resolve_sweep_dir,
        "output_dir": resolve_output_dir,
        "on_rank_zero": on_rank_zero,
        "rank_suffix": rank_suffix,
        "tensorboard_run_name": tensorboard_run_name,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
