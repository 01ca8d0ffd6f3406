"""What every entry script does first and last.

Library notices a user can do nothing about, kept out of the run's output; real warnings stay visible.

How an entry script ends: a user's mistake as one sentence and exit 2, a stop on a signal as its message.
"""

import logging
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

from user_errors import USER_ERROR_EXIT_CODE, UserError


class DropAdverts(logging.Filter):
    """Lightning's "💡 Tip: ... try installing [litlogger|litmodels]" lines: adverts, not about this run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_library_notices() -> None:
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(DropAdverts())
    logging.getLogger("onnxscript").setLevel(logging.WARNING)  # the ONNX exporter's progress lines
    # TensorBoard's graph writer has no other way than torch.jit.trace, which torch deprecates
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning)
    # inside Lightning's own pytree helper, with this torch release
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


log = logging.getLogger(__name__)


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def exit_on_user_error():
    """Turn a UserError into its message and exit code 2, and a stop on a signal into its message and 128 + the signal's number.

    In a multirun the job's failure (a UserError, or any other exception) is recorded instead, as the one
    sentence a single run would end with (runs/hydra_callbacks.py writes it to status.json), and not raised:
    Hydra's sweepers re-raise a failed job's exception after the whole sweep, which would end it with a
    traceback before its summary; the sweep ends with a line that counts the failed jobs instead
    (runs/hydra_callbacks.py). The task function then returns whatever follows its `with` block. A signal
    ends the whole sweep.
    """
    try:
        yield
    except Exception as error:
        error = as_user_error(error)
        stop = _stopped_by_signal(error)
        if stop is not None:
            print(f"stopped: {stop[1]}", file=sys.stderr)
            raise SystemExit(128 + stop[0]) from None
        if not _in_multirun():
            if isinstance(error, UserError):
                print(f"error: {error}", file=sys.stderr)
                raise SystemExit(USER_ERROR_EXIT_CODE) from None
            raise
        record_job_failure(error)
        if isinstance(error, UserError):
            log.error(str(error))
        else:  # a bug: its traceback, as a single run shows it
            log.error(f"This job failed: {error.__class__.__name__}: {error}", exc_info=error)


def as_user_error(error: Exception) -> Exception:
    """A config value the user left unset (`???`) or removed (`~key`), found only where it is read, as a UserError."""
    if isinstance(error, (MissingMandatoryValue, ConfigKeyError, ConfigAttributeError)) and error.full_key:
        return UserError(f"{error.full_key} has no value: give {error.full_key}=VALUE on the command line.")
    return error


def _stopped_by_signal(error: Exception) -> tuple[int, str] | None:
    """(signal number, message) when `error` is a stop on a signal; those exceptions exist only once training has imported Lightning."""
    if "lightning" not in sys.modules:
        return None
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from callbacks.stop_on_signal import TrainingStopped

    if isinstance(error, TrainingStopped):
        return error.signum, str(error)
    if isinstance(
        error, SIGTERMException
    ):  # Lightning's own stop on SIGTERM, outside the training loop (e.g. in the sanity check)
        return signal.SIGTERM, "SIGTERM before training started; nothing was trained, so nothing needed saving."
    return None


def failure_reason(error: BaseException) -> str:
    """One line: the message of a UserError (already a sentence), else the last line of the traceback a single
    run would show (the exception's type and message), with where it was raised when the message is empty."""
    message = " ".join(str(error).split())
    if isinstance(error, UserError) and message:
        return message
    if message:
        return f"{error.__class__.__name__}: {message}"
    frames = traceback.extract_tb(error.__traceback__)
    where = f" in {frames[-1].name} ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{error.__class__.__name__} (without a message) raised{where}; the job's train.log has the traceback."


_job_failure: str | None = None


def record_job_failure(error: BaseException) -> None:
    """The failure of the job running in this process, for its status.json (RecordJobStatus writes it when the job ends)."""
    global _job_failure
    _job_failure = failure_reason(error)


def take_job_failure() -> str | None:
    """The recorded failure of the job that just ended (None if it did not fail), cleared for the next job."""
    global _job_failure
    failure, _job_failure = _job_failure, None
    return failure


def quoted(value: str) -> str:
    """`value` as a single-quoted Hydra override value: paths with spaces, commas or '=' stay one string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def positional_to_overrides(arguments: Sequence[str], keys: Sequence[str]) -> list[str]:
    """`A B ...` -> `a=A b=B ...` for keys ("a", "b"): the leading arguments that are neither key=value nor flags,
    one per key, quoted for Hydra (a path with spaces, commas or digits only stays one string)."""
    rewritten = list(arguments)
    for position, key in enumerate(keys):
        if position < len(rewritten) and "=" not in rewritten[position] and not rewritten[position].startswith("-"):
            rewritten[position] = f"{key}={quoted(rewritten[position])}"
        else:
            break
    return rewritten
