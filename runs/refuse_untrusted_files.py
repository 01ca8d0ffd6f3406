"""Hydra callback (conf/hydra/default.yaml): the files a command names are checked before its run directory exists.

Hydra creates the run directory (and the resolver of hydra.run.dir, runs/run_dir.py, creates it even
earlier for resume=true) before the task function runs; `on_run_start` comes first. Each file the config
names (ckpt_path, compare's a and b, predict's exported, resume=true's last.ckpt) is read here with the
reader its entry point uses, whose check (checkpoints/trusted_config.py) refuses a file that names code: one sentence
and exit code 2, and no run directory, log or config written. In a multirun the jobs' own reads check.
"""

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from analysis.prediction_files import PREDICTION_FILE_SUFFIXES
from runs.exits import exit_on_user_error
from runs.run_dir import LAST_CHECKPOINT


def files_named(config: DictConfig) -> list[tuple[str, Path]]:
    """(kind, path) of the existing files an entry point's config names: checkpoints, prediction files, exported models."""
    named = []
    for key in ("ckpt_path", "a", "b"):
        value = config.get(key)
        if isinstance(value, str) and value and Path(value).is_file():
            prediction_file = key != "ckpt_path" and Path(value).suffix in PREDICTION_FILE_SUFFIXES
            named.append(("predictions" if prediction_file else "checkpoint", Path(value)))
    if config.get("resume") and not config.get("ckpt_path"):
        last = Path(config.hydra.run.dir) / LAST_CHECKPOINT  # the resolver chose the run to continue
        if last.is_file():
            named.append(("checkpoint", last))
    exported = config.get("exported")
    if isinstance(exported, str) and exported and Path(exported).is_file():
        named.append(("exported", Path(exported)))
    return named


def read_named_files(config: DictConfig) -> None:
    """Each named file read as its entry point will read it (torch and Lightning imported only when one is named)."""
    from analysis.prediction_files import read_predictions
    from checkpoints.loading import load_checkpoint
    from deployment.exporting import read_contract

    readers = {
        "checkpoint": lambda path: load_checkpoint(path, mmap=True),
        "predictions": read_predictions,
        "exported": read_contract,
    }
    for kind, path in files_named(config):
        readers[kind](path)


class RefuseUntrustedFiles(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_user_error():
            read_named_files(config)
