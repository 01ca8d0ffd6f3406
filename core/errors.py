"""Mistakes a user can make end as one sentence and a non-zero exit, not as a traceback.

Hydra and Lightning are imported where they are used, not with this module: the background writer
(core/background.py) raises UserError without loading them.
"""

import logging
import signal
import sys
from contextlib import contextmanager

log = logging.getLogger(__name__)

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """Something the user can fix; the message says what is wrong and how to fix it, in one sentence."""


class TrainingStopped(Exception):
    """Training ended early on a signal, after saving a checkpoint to resume from; the message says how."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def exit_on_user_error():
    """Turn a UserError into its message and exit code 2, and a stop on a signal into its message and 128 + the signal's number.

    In a multirun the job's failure (a UserError, or any other exception) is recorded instead, as the one
    sentence a single run would end with (core/job_status.py writes it to status.json), and not raised:
    Hydra's sweepers re-raise a failed job's exception after the whole sweep, which would end it with a
    traceback before its summary; the sweep ends with a line that counts the failed jobs instead
    (core/sweep_summary.py). The task function then returns whatever follows its `with` block. A signal
    ends the whole sweep.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except TrainingStopped as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        raise SystemExit(128 + stop.signum) from None
    except SIGTERMException:  # Lightning's own stop on SIGTERM, outside the training loop (e.g. in the sanity check)
        print(
            "stopped: SIGTERM before training started; nothing was trained, so nothing needed saving.", file=sys.stderr
        )
        raise SystemExit(128 + signal.SIGTERM) from None
    except UserError as error:
        if not _in_multirun():
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT_CODE) from None
        _record_job_failure(error)
        log.error(str(error))
    except Exception as error:
        if not _in_multirun():
            raise
        _record_job_failure(error)
        log.error(
            f"This job failed: {error.__class__.__name__}: {error}", exc_info=error
        )  # a bug: its traceback, as a single run shows it


def _record_job_failure(error: BaseException) -> None:
    from core.job_status import record_job_failure

    record_job_failure(error)
