"""An Optuna study whose trials are runs of train.py's config, each composed by Hydra's loader and run by its run_job.

Not a Hydra sweeper: the pruner must reach the training loop, a sweeper hands its launcher only overrides, and
hydra-optuna-sweeper needs Optuna < 3 (docs/devices_and_sweeps.md)."""

import fcntl
import logging
import math
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer
from hydra.core.utils import configure_log, run_job
from hydra.errors import HydraException
from hydra.types import HydraContext, RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from optuna.trial import TrialState

from analysis.prediction_files import markdown_rows, write_csv
from analysis.sweep_table import cell
from runs.config_check import check_config, several_processes
from runs.entry_points import RunCallbacks, failure_reason, quoted
from user_errors import UserError, replace_whole

log = logging.getLogger(__name__)

RUN_DIR, FAILURE, STOPPED = "run_dir", "failure", "stopped"  # a trial's user attributes


def run_search(cfg: DictConfig) -> None:
    settings, space = cfg.search, check_settings(cfg)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the storage's heartbeat
    optuna.logging.disable_default_handler()  # Optuna's lines through Hydra's logging: the console and search.log
    optuna.logging.enable_propagation()
    study = open_study(settings)

    def full(study: optuna.Study) -> bool:  # trials towards n_trials: all but those stopped with their worker
        trials = study.get_trials(deepcopy=False, states=[state for state in TrialState if state != TrialState.WAITING])
        return sum(STOPPED not in trial.user_attrs for trial in trials) >= settings.n_trials

    def after_trial(study: optuna.Study, trial: Any) -> None:
        write_summary(study, settings)
        if full(study):
            study.stop()

    try:
        if full(study):
            log.info(f"The study {settings.study_name} has its {settings.n_trials} trials already (search.n_trials).")
        else:
            study.optimize(objective(settings, space), callbacks=[after_trial], gc_after_trial=True)
    except KeyboardInterrupt:  # outside a trial's training, where StopOnSignal ends it with its own message
        print("stopped: interrupted; the same command continues the study.", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    finally:
        path = write_summary(study, settings)
    log.info(f"Every trial of the study: {path}; open the study with: optuna-dashboard {settings.storage}")


def check_settings(cfg: DictConfig) -> dict[str, Any]:
    """The search's settings and the command line's own mistakes, before any trial starts; returns the space."""
    settings = cfg.search
    OmegaConf.to_container(settings, throw_on_missing=True)  # search.study_name=???: entry_points' "has no value"
    if isinstance(settings.n_trials, bool) or not isinstance(settings.n_trials, int) or settings.n_trials < 1:
        raise UserError(f"search.n_trials={settings.n_trials} must be a whole number of trials, 1 or more.")
    if not settings.params:
        raise UserError(
            "search.params is empty: give a search space, e.g. optimizer.lr: tag(log, interval(1e-4, 0.1))."
        )
    if several_processes(cfg.trainer):  # DDP would start its other processes with the whole search's command line
        raise UserError(
            f"A search runs each trial in one process, not on trainer.devices={cfg.trainer.get('devices')} trainer.num_nodes="
            f"{cfg.trainer.get('num_nodes')}: give trainer.devices=1 and start one worker per GPU or node (docs/scale.md)."
        )
    parser, loader, space = OverridesParser.create(), GlobalHydra.instance().config_loader(), {}
    for key, value in settings.params.items():
        try:
            space[key] = distribution(parser.parse_override(f"{key}={value}"))
        except (HydraException, ValueError) as error:
            raise UserError(
                f"search.params: '{key}: {value}' is not a search range ({' '.join(str(error).split())}); write "
                "choice(a, b), interval(0.0, 1.0), tag(log, interval(1e-4, 0.1)) or range(1, 10)."
            ) from None
        options = loader.get_group_options(key)  # a config group's choice names options that conf/ has
        choices = space[key][1].get("choices", []) if isinstance(space[key], tuple) else [space[key]]
        if unknown := [str(choice) for choice in choices if options and str(choice) not in options]:
            raise UserError(
                f"search.params: conf/{key}/ has no option {', '.join(unknown)} (it has {', '.join(options)}); choose among those."
            )
    check_config(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "search"]))  # what train.py would compose
    return space


def distribution(override: Any) -> tuple[str, dict[str, Any]] | str:
    """Hydra's sweep syntax as (Optuna's suggest_<kind>, its arguments), as hydra-optuna-sweeper read it, or a plain value."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return "categorical", {"choices": list(override.sweep_iterator(transformer=Transformer.encode))}
    if isinstance(value, RangeSweep):  # range(start, stop, step): stop excluded, as in Python
        kind = "float" if any(isinstance(bound, float) for bound in (value.start, value.stop, value.step)) else "int"
        return kind, {"low": value.start, "high": value.stop - value.step, "step": value.step}
    if isinstance(value, IntervalSweep):
        kind = "int" if isinstance(value.start, int) and isinstance(value.end, int) else "float"
        return kind, {"low": value.start, "high": value.end, "log": "log" in value.tags}
    raise ValueError(f"{type(value).__name__} has no Optuna distribution")


def open_study(settings: DictConfig) -> optuna.Study:
    """The study in a storage several workers open at once: a database URL, or a journal file's path (no "://")."""
    storage = str(settings.storage)
    try:
        sampler, pruner = instantiate(settings.sampler), instantiate(settings.pruner) or optuna.pruners.NopPruner()
        Path(settings.dir).mkdir(parents=True, exist_ok=True)
        with open(Path(settings.dir) / "create.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two workers creating a new SQLite file's tables at once can collide
            if "://" not in storage:  # a journal file: for workers on machines that share only a file system
                opened = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
            else:  # SQLite writers wait for each other; a worker killed outright has its trial failed by the next
                connect = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
                opened = optuna.storages.RDBStorage(storage, engine_kwargs=connect, heartbeat_interval=60)
            study = optuna.create_study(
                storage=opened,
                study_name=settings.study_name,
                sampler=sampler,
                pruner=pruner,
                direction=settings.direction,
                load_if_exists=True,
            )
        if (stored := study.direction.name.lower()) != settings.direction:  # load_if_exists keeps the stored one
            raise ValueError(f"it is to {stored}, not to {settings.direction}; or give another search.study_name")
    except Exception as error:
        raise UserError(
            f"The study cannot be opened ({' '.join(str(error).split())}): check search.storage={storage} (a database "
            "URL or a journal file's path this machine reaches), search.sampler, search.pruner and search.direction."
        ) from None
    return study


def objective(settings: DictConfig, space: dict[str, Any]):
    """One trial: its values as overrides of the worker's command line, composed and run as a run of train.py."""
    from optuna_integration import PyTorchLightningPruningCallback

    from callbacks.resume import TrainingStopped
    from runs.build import train

    hydra, loader = HydraConfig.get(), GlobalHydra.instance().config_loader()  # the worker's, kept for its log
    task = [o for o in hydra.overrides.task if o.lstrip("+~").split("=", 1)[0] not in space]  # the trial's replace them
    overrides = [o for o in hydra.overrides.hydra if o.split("=", 1)[0] not in ("hydra.run.dir", "hydra.job.name")]
    overrides += ["hydra.job.name=train", "task_name=train"]

    def run_trial(trial: optuna.Trial) -> float:
        run_dir = Path(settings.dir) / "trials" / str(trial.number)
        trial.set_user_attr(RUN_DIR, str(run_dir))
        chosen = [
            f"{key}={getattr(trial, f'suggest_{how[0]}')(key, **how[1]) if isinstance(how, tuple) else how}"
            for key, how in space.items()
        ]
        log.info(f"Trial {trial.number}: {' '.join(chosen)} in {run_dir}")
        try:
            run_as_train = [*overrides, f"hydra.run.dir={quoted(str(run_dir))}", *task, *chosen]
            config = loader.load_configuration(hydra.job.config_name, run_as_train, RunMode.RUN)
        except (HydraException, OmegaConfBaseException) as error:
            raise UserError(
                f"Trial {trial.number}'s values do not compose ({' '.join(str(error).split())}): correct search.params."
            ) from None
        with open_dict(config):
            del config["search"]  # the run's stored config is train.py's

        def train_trial(cfg: DictConfig) -> dict[str, float]:  # as train.py's main, with the pruner's callback
            check_config(cfg)
            return train(cfg, [PyTorchLightningPruningCallback(trial, monitor=settings.report)])

        try:
            job = run_job(
                task_function=train_trial,
                config=config,
                job_dir_key="hydra.run.dir",
                job_subdir_key=None,
                # a trial is a run (RunMode.RUN): the callbacks' status of a multirun's job does not apply
                hydra_context=HydraContext(config_loader=loader, callbacks=RunCallbacks()),
            )
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C outside training, or Lightning's exit on a signal in testing
            trial.set_user_attr(STOPPED, "interrupted outside training")
            raise KeyboardInterrupt from None
        finally:
            configure_log(hydra.job_logging, hydra.verbose)  # back to search.log after the trial's train.log
        try:
            metrics = job.return_value  # raises a failed job's exception
            if settings.objective not in metrics:
                raise UserError(
                    f"the run returned no {settings.objective} (search.objective); callbacks=none keeps no best checkpoint"
                )
            return metrics[settings.objective]
        except (TrainingStopped, optuna.TrialPruned) as error:  # stopped: the search stops; the trial does not count
            if isinstance(error, TrainingStopped):
                trial.set_user_attr(STOPPED, " ".join(str(error).split()))
            raise
        except Exception as error:  # its one line; a bug also its traceback, as a run shows it
            reason = failure_reason(error)
            trial.set_user_attr(FAILURE, reason)
            log.error(f"Trial {trial.number} failed: {reason}", exc_info=not isinstance(error, UserError))
            return math.nan  # Optuna records a trial whose value is nan as failed, and the search goes on

    return run_trial


def write_summary(study: optuna.Study, settings: DictConfig) -> Path:
    """summary.md and summary.csv in the study's folder: every trial of every worker, and the best."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        note, steps = trial.user_attrs.get(FAILURE, ""), trial.intermediate_values
        if trial.state == TrialState.PRUNED and steps:  # Optuna keeps its last reported value as the trial's value
            note = f"pruned after epoch {max(steps)} ({steps[max(steps)]:.4f})"
        if STOPPED in trial.user_attrs:
            note = f"stopped with its worker: {trial.user_attrs[STOPPED]}"
        rows.append(
            {
                "trial": trial.number,
                "state": {"FAIL": "failed"}.get(trial.state.name, trial.state.name.lower()),
                "value": "" if trial.value is None or trial.state == TrialState.PRUNED else trial.value,
                **trial.params,
                "epochs": len(steps),
                "seconds": round(trial.duration.total_seconds(), 1) if trial.duration else "",
                "run_dir": trial.user_attrs.get(RUN_DIR, ""),
                "note": note,
            }
        )
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["trial", "state", "value"]
    counts = {s: sum(row["state"] == s for row in rows) for s in ("complete", "pruned", "failed", "running")}
    states = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines = [f"# Study {study.study_name}", "", f"{len(rows)} trials: {states}.", ""]
    if counts["complete"]:
        best = study.best_trial
        values = ", ".join(f"{key}={value}" for key, value in best.params.items())
        where = best.user_attrs.get(RUN_DIR)
        lines += [f"Best: trial {best.number}, {settings.objective} {best.value:.4f} ({values}), {where}", ""]
    header = [settings.objective if column == "value" else column for column in columns]
    lines += markdown_rows(header, ([cell(row.get(column, "")) for column in columns] for row in rows))
    write_csv(
        Path(settings.dir) / "summary.csv", columns, ([row.get(column, "") for column in columns] for row in rows)
    )
    replace_whole(Path(settings.dir) / "summary.md", ("\n".join(lines) + "\n").encode())  # other workers write it too
    return Path(settings.dir) / "summary.md"
