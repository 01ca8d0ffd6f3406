"""Checkpoint files that are always whole: written to a temporary file beside the target, synced, then renamed over it.

Lightning's TorchCheckpointIO serialises into memory and writes through an fsspec transaction, whose
temporary file lives in the system temp folder: when that is another filesystem (a tmpfs /tmp, a
cluster's local disk beside a network home), the final move is a copy into the target, so a kill in the
middle of it leaves a truncated last.ckpt, and nothing is fsynced. Here the temporary file is created in
the checkpoint's own folder, so os.replace() is an atomic rename: a reader (or a resume after SIGKILL or a
power cut) sees the previous complete file or the new complete file, never a part of one.
"""

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from user_errors import UserError

log = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".tmp"

PathLike = str | os.PathLike


def temporary_files_of(path: Path) -> list[Path]:
    """Temporary files left beside `path` by writes that were killed before their rename."""
    return sorted(path.parent.glob(f".{path.name}.*{TEMPORARY_SUFFIX}"))


def _is_url(path: PathLike) -> bool:
    """A URL (s3://, gs://, file://, ...), which Lightning writes through fsspec; a plain path is written here."""
    return "://" in str(path)


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """torch.save(obj, path) such that `path` is at every moment either its old complete content or the new one."""
    _atomic_write(path, lambda file: torch.save(obj, file))


def atomic_write_bytes(data: bytes, path: PathLike) -> None:
    _atomic_write(path, lambda file: file.write(data))


def _atomic_write(path: PathLike, write: Callable[[BinaryIO], Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in temporary_files_of(path):  # a save that was killed half-way; its target is still the older whole file
        stale.unlink(missing_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)  # makes the rename itself durable


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as error:  # some filesystems (e.g. some network mounts) refuse to sync a directory
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(descriptor)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO with atomic local writes (remote URLs keep Lightning's fsspec path).

    A failed write (disk full, no permission) raises a UserError that names the file; the previous
    checkpoint of that name is left as it was.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: PathLike, storage_options: Any | None = None) -> None:
        if storage_options is not None or _is_url(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        try:
            atomic_torch_save(checkpoint, path)
        except (
            OSError,
            RuntimeError,
        ) as error:  # RuntimeError: torch's writer found a short write (a full disk, a quota)
            if isinstance(error, OSError) and error.strerror:
                reason = error.strerror
            else:
                reason = f"the write stopped short: it needs more than the {shutil.disk_usage(Path(path).parent).free // 1024} KiB free on that disk"
            raise UserError(
                f"Could not write the checkpoint {path} ({reason}): free disk space or point paths.log_dir at a writable disk "
                "with room; checkpoints saved before are intact."
            ) from error
