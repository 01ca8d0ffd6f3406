"""The one exception every layer raises for a mistake the user can fix (runs/entry_points.py turns it into exit 2), and
the one way every layer replaces a file, so that neither a failed write nor a kill leaves half of one."""

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """Something the user can fix; the message says what is wrong and how to fix it, in one sentence."""


@contextlib.contextmanager
def writing(
    what: str, fix: str = "free disk space or point paths.log_dir at a disk you can write to"
) -> Iterator[None]:
    """A write of `what` that fails (a full disk, no permission) as one sentence naming it and the `fix`."""
    try:
        yield
    except OSError as error:
        raise UserError(f"Could not write {what} ({error.strerror or error}): {fix}.") from error


def replace_whole(path: str | os.PathLike, content: bytes | Callable[[BinaryIO], Any]) -> None:
    """`path` replaced by `content` (bytes, or a function writing to a file) through a synced temporary file in its folder
    (`.<name>.<random>.tmp`) and a rename: a reader sees the old whole file or the new one, never half of either."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            content(file) if callable(content) else file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    with contextlib.suppress(OSError):  # the rename made durable; some network mounts refuse to sync a folder
        os.fsync(folder)
    os.close(folder)
