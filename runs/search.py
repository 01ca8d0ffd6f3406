"""search.py: an Optuna study whose trials are runs of train.py's configuration, pruned on a metric of each validation.

Why an entry point on Optuna's own API and not a Hydra sweeper plugin: pruning needs the trial inside the training
loop (the pruning callback reports to it at every validation and stops the run), and a sweeper hands a launcher only
overrides, which may run in other processes (joblib, submitit) that never see the trial. Here each trial is composed
with Hydra's config loader and run with Hydra's own `run_job`, as Hydra's basic launcher runs a job: the run
directory, `.hydra/`, train.log and the Hydra callbacks are those of a train.py run, and the trial object reaches
`runs.training.train` as an extra Lightning callback (docs/devices_and_sweeps.md, docs/scale.md).

The study lives in a storage that several processes open at once (SQLite, a database server, a journal file): the
same command again is another worker, or the continuation of a stopped search. `search.n_trials` is the study's size,
not a count per process, so that any number of workers fills one study of that size between them.
"""

import csv
import fcntl
import logging
import math
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer
from hydra.core.utils import JobStatus, configure_log, run_job
from hydra.errors import HydraException
from hydra.types import HydraContext, RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from runs.entry_points import failure_reason, quiet_library_notices, quoted
from user_errors import UserError

log = logging.getLogger(__name__)

SUMMARY = "summary"
TRIALS = "trials"
# user attributes of a trial: its run directory, why it failed, and that it was stopped with its worker
RUN_DIR, FAILURE, STOPPED = "run_dir", "failure", "stopped"


def run_search(cfg: DictConfig) -> None:
    settings = cfg.search
    check_settings(settings)
    space = search_space(settings.params)
    check_group_options(space)
    from runs.config_check import check_config

    check_one_process(cfg.trainer)
    check_config(training_config(cfg))  # the command line's own mistakes, before any trial starts
    quiet_library_notices()
    optuna.logging.disable_default_handler()  # Optuna's lines through Hydra's logging: the console and search.log
    optuna.logging.enable_propagation()

    study = open_study(settings)
    study_dir = Path(settings.dir)
    optuna.storages.fail_stale_trials(study)  # trials of workers killed outright, on storages with a heartbeat
    if trials_to_go(study, settings.n_trials) <= 0:
        log.info(f"The study {settings.study_name} has its {settings.n_trials} trials already (search.n_trials).")
    else:
        objective = Objective(settings, space, study_dir)

        def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            write_summary(study, settings)
            if trials_to_go(study, settings.n_trials) <= 0:
                study.stop()

        try:
            study.optimize(objective, callbacks=[after_trial], gc_after_trial=True)
        except KeyboardInterrupt:  # Ctrl-C outside training (Optuna has marked the trial failed): as a signal stop
            write_summary(study, settings)
            print("stopped: interrupted (Ctrl-C); the same command continues the study.", file=sys.stderr)
            raise SystemExit(128 + signal.SIGINT) from None
        except Exception:  # a stop on a signal during training: the summary first, then its message (search.py)
            write_summary(study, settings)
            raise
        if objective.signal_received is not None:
            write_summary(study, settings)
            name = signal.Signals(objective.signal_received).name
            print(
                f"stopped: {name} as a trial ended; the same command continues the study.",
                file=sys.stderr,
            )
            raise SystemExit(128 + objective.signal_received)
    path = write_summary(study, settings)
    log.info(f"Every trial of the study: {path}; open the study with: optuna-dashboard {settings.storage}")


def check_settings(settings: DictConfig) -> None:
    if OmegaConf.is_missing(settings, "study_name"):
        raise UserError(
            "search.study_name is not set: name the study in conf/hparams_search/<name>.yaml or give search.study_name=NAME."
        )
    if isinstance(settings.n_trials, bool) or not isinstance(settings.n_trials, int) or settings.n_trials < 1:
        raise UserError(f"search.n_trials={settings.n_trials} must be a whole number of trials, 1 or more.")
    if settings.direction not in ("maximize", "minimize"):
        raise UserError(f"search.direction={settings.direction} must be maximize or minimize.")
    if not settings.params:
        raise UserError(
            "search.params is empty: give the search space in conf/hparams_search/<name>.yaml, e.g. optimizer.lr: tag(log, interval(1e-4, 0.1))."
        )
    if not settings.storage:
        raise UserError(
            "search.storage is empty: give a database URL (sqlite:///path/optuna.db) or a journal file's path."
        )


def check_one_process(trainer: DictConfig) -> None:
    """A trial runs inside this worker: DDP would start its other processes with the whole search's command line."""
    devices = trainer.get("devices")
    if isinstance(devices, str):  # "auto", "2", "0,1" (device ids)
        several = devices.strip() == "-1" or "," in devices or (devices.strip().isdigit() and int(devices) > 1)
    elif isinstance(devices, int):
        several = devices == -1 or devices > 1
    else:  # a list of device ids, or null
        several = devices is not None and len(devices) > 1
    if several or (trainer.get("num_nodes") or 1) > 1:
        raise UserError(
            f"A search runs each trial in one process, not on trainer.devices={devices} trainer.num_nodes="
            f"{trainer.get('num_nodes')}: give trainer.devices=1 and start one worker per GPU (CUDA_VISIBLE_DEVICES) "
            "or per node instead (docs/scale.md)."
        )


def search_space(params: DictConfig) -> dict[str, Any]:
    """key -> its Optuna distribution, from Hydra's sweep syntax as hydra-optuna-sweeper read it; a plain value is
    an override that every trial gets."""
    parser = OverridesParser.create()
    space = {}
    for key, value in params.items():
        try:
            override = parser.parse_override(f"{key}={value}")
            space[str(key)] = distribution(override)
        except (HydraException, ValueError) as error:
            message = " ".join(str(error).split())
            raise UserError(
                f"search.params: '{key}: {value}' is not a search range ({message}); write choice(a, b), "
                "interval(0.0, 1.0), tag(log, interval(1e-4, 0.1)) or range(1, 10)."
            ) from None
    return space


def check_group_options(space: dict[str, Any]) -> None:
    """A choice of a config group (optimizer: choice(sgd, adam)) names options that conf/ has."""
    loader = GlobalHydra.instance().config_loader()
    for key, values in space.items():
        options = loader.get_group_options(key)
        choices = values.choices if isinstance(values, CategoricalDistribution) else [values]
        unknown = [str(choice) for choice in choices if options and str(choice) not in options]
        if unknown:
            raise UserError(
                f"search.params: conf/{key}/ has no option {', '.join(unknown)} (it has {', '.join(options)}); choose among those."
            )


def distribution(override: Any) -> BaseDistribution | str:
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if isinstance(value, RangeSweep):  # range(start, stop, step): stop excluded, as in Python
        if any(isinstance(bound, float) for bound in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop - value.step, step=value.step)
        return IntDistribution(int(value.start), int(value.stop) - int(value.step), step=int(value.step))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(value.start, value.end, log=log_scale)
    raise ValueError(f"{type(value).__name__} has no Optuna distribution")


def suggest(trial: optuna.Trial, key: str, space: BaseDistribution | str) -> Any:
    if isinstance(space, CategoricalDistribution):
        return trial.suggest_categorical(key, space.choices)
    if isinstance(space, IntDistribution):
        return trial.suggest_int(key, space.low, space.high, step=space.step, log=space.log)
    if isinstance(space, FloatDistribution):
        return trial.suggest_float(key, space.low, space.high, step=space.step, log=space.log)
    return space


def training_config(cfg: DictConfig) -> DictConfig:
    """The composed config without the search's own settings: what train.py would have composed."""
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(plain):
        del plain["search"]
    return plain


def _instantiated(settings: DictConfig, key: str) -> Any:
    try:
        return instantiate(settings[key])
    except Exception as error:
        message = " ".join(str(error).split())
        raise UserError(f"search.{key} could not be made ({message}); check its _target_ and arguments.") from None


def open_study(settings: DictConfig) -> optuna.Study:
    sampler = _instantiated(settings, "sampler")
    pruner = _instantiated(settings, "pruner") if settings.pruner is not None else optuna.pruners.NopPruner()
    storage = str(settings.storage)
    with _creation_lock(storage):
        study = optuna.create_study(
            storage=_storage(storage),
            study_name=settings.study_name,
            sampler=sampler,
            pruner=pruner,
            direction=settings.direction,
            load_if_exists=True,
        )
    if study.direction.name.lower() != settings.direction:
        raise UserError(
            f"The study {settings.study_name} in {storage} is to {study.direction.name.lower()}, not to "
            f"{settings.direction}: give the search another search.study_name."
        )
    return study


def _storage(storage: str) -> optuna.storages.BaseStorage:
    if "://" not in storage:  # a journal file, which workers on several machines can share through a file system
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    sqlite = _sqlite_file(storage)
    if sqlite is not None:
        sqlite.parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            storage,
            # workers writing at the same moment wait for SQLite's lock instead of failing at once
            engine_kwargs={"connect_args": {"timeout": 60}} if sqlite is not None else {},
            # a worker killed outright leaves its trial RUNNING; the next worker's check marks it failed
            heartbeat_interval=60,
        )
    except Exception as error:
        message = " ".join(str(error).split())
        raise UserError(
            f"search.storage={storage} cannot be opened ({message}); give a database URL that this machine reaches."
        ) from None


def _sqlite_file(storage: str) -> Path | None:
    from sqlalchemy.engine import make_url

    url = make_url(storage)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


@contextmanager
def _creation_lock(storage: str) -> Iterator[None]:
    """Two workers creating the tables of a new SQLite file at the same moment can collide: one at a time."""
    sqlite = _sqlite_file(storage) if "://" in storage else None
    if sqlite is None:
        yield
        return
    sqlite.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{sqlite}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def counted(trial: FrozenTrial) -> bool:
    """A trial that counts towards search.n_trials: finished, or running (in this or another worker)."""
    if trial.state == TrialState.FAIL:
        return STOPPED not in trial.user_attrs
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def trials_to_go(study: optuna.Study, n_trials: int) -> int:
    return n_trials - sum(counted(trial) for trial in study.get_trials(deepcopy=False))


class Objective:
    """One trial: its values as overrides of the search's config, composed and run as a run of train.py."""

    def __init__(self, settings: DictConfig, space: dict[str, Any], study_dir: Path):
        self.settings, self.space, self.study_dir = settings, space, study_dir
        hydra = HydraConfig.get()
        self.config_name = hydra.job.config_name
        self.worker_logging = (hydra.job_logging, hydra.verbose)
        searched = set(space)
        # the command line's overrides, except those of the searched keys (the trial's values replace them)
        self.task_overrides = [o for o in hydra.overrides.task if o.lstrip("+~").split("=", 1)[0] not in searched]
        self.hydra_overrides = [
            o for o in hydra.overrides.hydra if o.split("=", 1)[0] not in ("hydra.run.dir", "hydra.job.name")
        ]
        self.loader = GlobalHydra.instance().config_loader()
        # a stop signal that came during a trial's test, after StopOnSignal stopped watching: the trial completes,
        # and the search stops after it
        self.signal_received: int | None = None
        self._trainers: list[Any] = []

    def trial_config(self, values: dict[str, Any], run_dir: Path) -> DictConfig:
        config = self.loader.load_configuration(
            config_name=self.config_name,
            overrides=[
                *self.hydra_overrides,
                f"hydra.run.dir={quoted(str(run_dir))}",
                # a run of train.py's task: its log is train.log, its config says task_name train
                "hydra.job.name=train",
                "task_name=train",
                *self.task_overrides,
                *(f"{key}={value}" for key, value in values.items()),
            ],
            run_mode=RunMode.RUN,
        )
        with open_dict(config):
            del config["search"]  # the run's config is train.py's: .hydra/config.yaml and the checkpoints store it
        return config

    def __call__(self, trial: optuna.Trial) -> float:
        run_dir = self.study_dir / TRIALS / str(trial.number)
        trial.set_user_attr(RUN_DIR, str(run_dir))
        values = {key: suggest(trial, key, space) for key, space in self.space.items()}
        log.info(f"Trial {trial.number}: {' '.join(f'{key}={value}' for key, value in values.items())} in {run_dir}")
        try:
            config = self.trial_config(values, run_dir)
        except (HydraException, OmegaConfBaseException) as error:
            reason = " ".join(str(error).split())
            raise UserError(
                f"Trial {trial.number}'s values do not compose ({reason}): correct search.params."
            ) from None
        try:
            job = run_job(
                task_function=self.task(trial),
                config=config,
                job_dir_key="hydra.run.dir",
                job_subdir_key=None,
                hydra_context=HydraContext(config_loader=self.loader, callbacks=JobCallbacks(config)),
            )
        except KeyboardInterrupt:
            trial.set_user_attr(STOPPED, "interrupted (Ctrl-C)")
            raise
        finally:
            configure_log(*self.worker_logging)  # back to the worker's own log after the trial's train.log
        received = signal_after_training(self._trainers)
        self._trainers.clear()  # a trainer holds its model and data: none kept beyond its trial
        if job.status == JobStatus.COMPLETED:
            if received is not None:
                self.signal_received = received
                trial.study.stop()
            metrics = job.return_value
            if self.settings.objective in metrics:
                return metrics[self.settings.objective]
            return self.failed(
                trial,
                f"the run returned no {self.settings.objective} (search.objective), only {', '.join(sorted(metrics))}; "
                "callbacks=none keeps no best checkpoint",
            )
        try:
            _ = job.return_value  # raises the trial's exception: Hydra's public way to read it
        except optuna.TrialPruned:
            log.info(f"Trial {trial.number} pruned: its {self.settings.report} is behind the other trials'.")
            raise
        except Exception as error:
            # a stop on a signal: the whole search stops with its message (search.py); the trial does not count
            if stopped_by_signal(error):
                trial.set_user_attr(STOPPED, " ".join(str(error).split()))
                raise
            if not isinstance(error, UserError):
                log.error(f"Trial {trial.number} failed", exc_info=error)  # a bug: its traceback, as a run shows it
            return self.failed(trial, failure_reason(error))
        raise AssertionError("unreachable: a failed job's return_value raises")

    def failed(self, trial: optuna.Trial, reason: str) -> float:
        trial.set_user_attr(FAILURE, reason)
        log.error(f"Trial {trial.number} failed: {reason}")
        return math.nan  # Optuna records a trial whose value is nan as failed, and the search goes on

    def task(self, trial: optuna.Trial):
        report = self.settings.report

        trainers = self._trainers
        trainers.clear()

        def run_trial(cfg: DictConfig) -> dict[str, float]:
            from lightning import Callback
            from optuna_integration import PyTorchLightningPruningCallback

            from runs.config_check import check_config
            from runs.training import train

            class KeepTrainer(Callback):
                def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
                    trainers.append(trainer)

            check_config(cfg)
            return train(cfg, [PyTorchLightningPruningCallback(trial, monitor=report), KeepTrainer()])

        return run_trial


class JobCallbacks:
    """The Hydra callbacks of a trial's config (conf/hydra/default.yaml), called at its start and end as Hydra's
    launchers call them around a job (Hydra's own collection of them is internal)."""

    def __init__(self, config: DictConfig):
        self.callbacks = [instantiate(callback) for callback in (config.hydra.get("callbacks") or {}).values()]

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        for callback in self.callbacks:
            callback.on_job_start(config=config, **kwargs)

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        for callback in reversed(self.callbacks):  # in reverse, as Hydra calls on_job_end
            callback.on_job_end(config=config, **kwargs)


def signal_after_training(trainers: list[Any]) -> int | None:
    """The signal a trial's StopOnSignal received too late to stop its training (after the last batch), if any."""
    from callbacks.stop_on_signal import StopOnSignal

    for trainer in trainers:
        for callback in trainer.callbacks:
            if isinstance(callback, StopOnSignal) and callback.received is not None:
                return callback.received
    return None


def stopped_by_signal(error: Exception) -> bool:
    """A stop on SIGINT or SIGTERM during training (callbacks/stop_on_signal.py, or Lightning's own before it)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from callbacks.stop_on_signal import TrainingStopped

    return isinstance(error, (TrainingStopped, SIGTERMException))


STATE_NAMES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        note = trial.user_attrs.get(STOPPED) or trial.user_attrs.get(FAILURE) or ""
        value = "" if trial.value is None else trial.value
        if trial.state == TrialState.PRUNED:  # Optuna keeps the last reported metric as a pruned trial's value
            value = ""
            if trial.intermediate_values:
                epoch = max(trial.intermediate_values)
                note = f"pruned after epoch {epoch} ({trial.intermediate_values[epoch]:.4f})"
        if trial.user_attrs.get(STOPPED):
            note = f"stopped with its worker: {note}"
        seconds = round(trial.duration.total_seconds(), 1) if trial.duration else ""
        rows.append(
            {
                "trial": trial.number,
                "state": STATE_NAMES.get(trial.state.name, trial.state.name.lower()),
                "value": value,
                **trial.params,
                "epochs": len(trial.intermediate_values),
                "seconds": seconds,
                "run_dir": trial.user_attrs.get(RUN_DIR, ""),
                "note": note,
            }
        )
    return rows


def write_summary(study: optuna.Study, settings: DictConfig) -> Path:
    """summary.md and summary.csv in the study's folder: every trial of every worker, and the best. Each worker
    rewrites them after each of its trials (atomically: another worker's reader never sees half a file)."""
    folder = Path(settings.dir)
    folder.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["trial", "state", "value"]
    _replace(folder / f"{SUMMARY}.csv", lambda file: _write_csv(file, columns, rows))
    counts = {name: sum(row["state"] == name for row in rows) for name in ("complete", "pruned", "failed", "running")}
    pruner = (
        "no pruning"
        if settings.pruner is None
        else f"{settings.pruner._target_.rsplit('.', 1)[-1]} on {settings.report} at each validation"
    )
    lines = [
        f"# Study {study.study_name}",
        "",
        f"Storage: `{settings.storage}` (open it with `optuna-dashboard {settings.storage}`); "
        f"{settings.direction} {settings.objective}; {pruner}.",
        "",
        f"{len(rows)} trials: " + ", ".join(f"{count} {name}" for name, count in counts.items()) + ".",
        "",
    ]
    if counts["complete"]:
        best = study.best_trial
        values = ", ".join(f"{key}={value}" for key, value in best.params.items())
        lines += [
            f"Best: trial {best.number}, {settings.objective} {best.value:.4f} ({values}), {best.user_attrs.get(RUN_DIR, '')}",
            "",
        ]
    value_column = {"value": settings.objective}
    lines += ["| " + " | ".join(value_column.get(column, column) for column in columns) + " |"]
    lines += ["|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    path = folder / f"{SUMMARY}.md"
    _replace(path, lambda file: file.write("\n".join(lines) + "\n"))
    return path


def _write_csv(file: Any, columns: list[str], rows: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(file, columns)
    writer.writeheader()
    writer.writerows(rows)


def _replace(path: Path, write: Any) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial.open("w", newline="") as file:
        write(file)
    os.replace(partial, path)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 else f"{value:.4f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value).replace("|", "/")
