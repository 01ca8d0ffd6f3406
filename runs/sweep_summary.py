"""Hydra callback: the sweep's table (analysis/sweep_table.py) after every job of a multirun and at its end.

A multirun with failed jobs ends with the line `N of M jobs failed, reasons in <sweep dir>/summary.md`
and exit code 2, printed and raised here in `on_multirun_end`: failed jobs return normally from the task
function (runs/exits.py), so that Hydra's sweeper does not end the sweep with the first failure's
traceback instead.
"""

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from analysis.run_records import FAILED
from analysis.sweep_table import job_dirs, summarize, write_summary
from user_errors import USER_ERROR_EXIT_CODE

log = logging.getLogger(__name__)


class WriteSweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml, hydra.callbacks): the summary after each job and at the end of a multirun.

    The rows of jobs that have ended are kept, so that a long sweep (an Optuna search of hundreds of
    trials) does not read every earlier job's events again after each job.
    """

    def __init__(self) -> None:
        self._ended: dict[Path, dict[str, Any]] = {}

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN and rank_zero_only.rank == 0:
            write_summary(Path(config.hydra.sweep.dir), self._ended)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if rank_zero_only.rank != 0 or not job_dirs(sweep_dir):
            return
        markdown_path, csv_path, markdown = write_summary(sweep_dir, self._ended)
        log.info(f"Sweep summary: {markdown_path} and {csv_path}\n{markdown}")
        rows, _ = summarize(sweep_dir, self._ended)
        failed = sum(row["status"] == FAILED for row in rows)
        if failed:
            print(f"{failed} of {len(rows)} jobs failed, reasons in {markdown_path}", file=sys.stderr, flush=True)
            raise SystemExit(USER_ERROR_EXIT_CODE)
