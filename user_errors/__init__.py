"""The one exception every layer raises for a mistake the user can fix (runs/entry_points.py turns it into exit 2)."""

from collections.abc import Iterator
from contextlib import contextmanager

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """Something the user can fix; the message says what is wrong and how to fix it, in one sentence."""


@contextmanager
def writing(what: str) -> Iterator[None]:
    """A write of `what` that fails (a full disk, no permission) as one sentence naming it."""
    try:
        yield
    except OSError as error:
        raise UserError(
            f"Could not write {what} ({error.strerror or error}): free disk space or point paths.log_dir at a disk you can write to."
        ) from error
