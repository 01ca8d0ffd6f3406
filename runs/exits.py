"""How an entry script ends: a user's mistake as one sentence and exit 2, a stop on a signal as its message."""

import logging
import signal
import sys
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.exceptions import SIGTERMException

from callbacks.stop_on_signal import TrainingStopped
from runs.job_status import record_job_failure
from user_errors import USER_ERROR_EXIT_CODE, UserError

log = logging.getLogger(__name__)


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def exit_on_user_error():
    """Turn a UserError into its message and exit code 2, and a stop on a signal into its message and 128 + the signal's number.

    In a multirun the job's failure (a UserError, or any other exception) is recorded instead, as the one
    sentence a single run would end with (runs/job_status.py writes it to status.json), and not raised:
    Hydra's sweepers re-raise a failed job's exception after the whole sweep, which would end it with a
    traceback before its summary; the sweep ends with a line that counts the failed jobs instead
    (runs/sweep_summary.py). The task function then returns whatever follows its `with` block. A signal
    ends the whole sweep.
    """
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
        record_job_failure(error)
        log.error(str(error))
    except Exception as error:
        if not _in_multirun():
            raise
        record_job_failure(error)
        log.error(
            f"This job failed: {error.__class__.__name__}: {error}", exc_info=error
        )  # a bug: its traceback, as a single run shows it
