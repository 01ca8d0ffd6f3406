"""The Optuna study of an `hparams_search` beside its sweep: the sweep directory made before the sweeper opens its
storage, and `study.md` / `study.csv` listing every trial of the study (every worker's, every session's).

Hydra creates a sweep directory when the launcher starts the first trials, but the Optuna sweeper opens its storage
before that; with the default storage, an SQLite file in the sweep directory, SQLite would find no folder. Hydra calls
`on_multirun_start` before it instantiates the sweeper, so the folder is made there.

The sweeper (hydra-optuna-sweeper) numbers the jobs of each process from 0 and keeps no link from a job to its trial;
`summary.md` lists this process's jobs, `study.md` the study's trials as the storage holds them.
"""

import csv
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

STUDY_NAME = "study"


def study_rows(storage: str, study_name: str) -> list[dict[str, Any]]:
    """One row per trial of the study: number, state, value, parameters, start and end."""
    import optuna  # only with the optuna extra

    study = optuna.load_study(study_name=study_name, storage=storage)
    rows = []
    for trial in study.trials:
        row = {"trial": trial.number, "state": trial.state.name, "value": "" if trial.value is None else trial.value}
        row.update(trial.params)
        row.update(started=_time(trial.datetime_start), ended=_time(trial.datetime_complete))
        rows.append(row)
    return rows


def _time(moment: Any) -> str:
    return moment.isoformat(sep=" ", timespec="seconds") if moment else ""


def write_study(sweep_dir: Path, storage: str, study_name: str) -> Path:
    rows = study_rows(storage, study_name)
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["trial", "state", "value"]
    with (sweep_dir / f"{STUDY_NAME}.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)
    complete = sum(row["state"] == "COMPLETE" for row in rows)
    lines = [
        f"# Study {study_name}",
        "",
        f"Storage: {storage}",
        "",
        f"{len(rows)} trials; {complete} complete. RUNNING: being run by a worker, or its worker was stopped.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + " --- |" * len(columns),
    ]
    lines += ["| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    path = sweep_dir / f"{STUDY_NAME}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and abs(value) < 1 else str(value)


class StudyFiles(Callback):
    """Hydra callback of conf/hparams_search/mnist_optuna.yaml."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        storage = config.hydra.sweeper.storage
        if storage is None:  # an in-memory study is gone with the sweeper
            return
        path = write_study(Path(config.hydra.sweep.dir), str(storage), config.hydra.sweeper.study_name)
        log.info(f"Every trial of the study: {path}")
