"""One writer per run directory: `<run dir>/run.lock`, an OS file lock (fcntl.flock) held while a process runs there.

The kernel releases the lock when its process ends, however it ends (a SIGKILL, a power cut on a local
disk), so a killed run never leaves its directory locked; the file itself stays, with the pid and host of
the last process that held it, which is what the refusal names. Taken in Hydra's `on_run_start`, before
Hydra writes the config and the log into the directory: `resume=true` (or `hydra.run.dir=`) into a run
directory that a live process trains in stops with one sentence and exit code 2, and changes nothing there.

Only global rank 0 takes it: under DDP Lightning starts the other processes of the same run with the same
run directory (and sets LOCAL_RANK/RANK, or SLURM sets SLURM_PROCID), which `rank_zero_only.rank` reads.
Multirun jobs each get a new directory and are not locked.

Once the lock is held, the temporary files of checkpoint writes that an earlier, killed process left there
are removed (checkpoints/atomic_io.py): no live write can own them.
"""

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from checkpoints.atomic_io import remove_interrupted_writes
from runs.exits import exit_on_user_error
from user_errors import UserError

LOCK_FILE = "run.lock"


class RunDirectoryInUse(UserError):
    pass


def lock_run_directory(run_dir: Path) -> int:
    """Takes the run directory's lock, writing this process's pid and host into the lock file; returns its descriptor
    (the lock lasts until it is closed or the process ends). Raises RunDirectoryInUse when another process holds it."""
    path = Path(run_dir) / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = (
            os.read(descriptor, 4096).decode(errors="replace").strip() or "a process that has not written its pid yet"
        )
        os.close(descriptor)
        raise RunDirectoryInUse(
            f"Another process ({holder}) is running in {run_dir}: wait for it to end or stop it, then run this command again "
            "(with resume=true it then continues from that run's last.ckpt)."
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(
        descriptor,
        f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(),
        0,
    )
    return descriptor


class LockRunDirectory(Callback):
    """Hydra callback (conf/hydra/default.yaml, hydra.callbacks): the run directory's lock for the whole run."""

    def __init__(self) -> None:
        self._descriptor: int | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if rank_zero_only.rank != 0:  # another process of a DDP run: rank 0 holds the lock for all of them
            return
        run_dir = Path(config.hydra.run.dir)  # resolving it creates the folder (runs/run_dir.py)
        run_dir.mkdir(parents=True, exist_ok=True)
        with exit_on_user_error():  # before Hydra starts the job, which would report it with a traceback
            self._descriptor = lock_run_directory(run_dir)
        remove_interrupted_writes(run_dir)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor releases the lock
            self._descriptor = None
