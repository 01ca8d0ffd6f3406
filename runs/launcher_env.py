"""What a process launcher tells every process it starts: the job's id (for one run directory per job) and the process's global rank.

torchrun sets TORCHELASTIC_RUN_ID (its --rdzv-id, the same on every node) and RANK; SLURM sets SLURM_JOB_ID
(kept when the job is requeued) and SLURM_PROCID. Lightning reads the same variables for the rendezvous.
"""

import os
import re

from runs.exits import exit_on_user_error
from user_errors import UserError

# the run id that torchrun uses when --rdzv-id is not given: every job would share it
TORCHRUN_DEFAULT_RUN_ID = "none"


def launcher_run_name() -> str | None:
    """`torchrun-<rdzv id>` or `slurm-<job id>` when a launcher started this process, else None (a new timestamp)."""
    with exit_on_user_error():  # called while Hydra resolves hydra.run.dir, which would report it with a traceback
        return _launcher_run_name()


def _launcher_run_name() -> str | None:
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id is not None:
        if run_id == TORCHRUN_DEFAULT_RUN_ID:
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise UserError(
                    "torchrun was started without --rdzv-id, so its processes cannot agree on a run directory: give every node "
                    "the same --rdzv-id=NAME (a job id), or name the directory with hydra.run.dir=PATH."
                )
            return None
        if not re.fullmatch(r"[\w.-]+", run_id):
            raise UserError(
                f"torchrun's --rdzv-id={run_id!r} cannot name a run directory: use letters, digits, '.', '_' and '-' only."
            )
        return f"torchrun-{run_id}"
    from lightning.fabric.plugins.environments import (
        SLURMEnvironment,  # slow import: only when choosing a run directory
    )

    if SLURMEnvironment.detect() and SLURMEnvironment.job_id() is not None:
        return f"slurm-{SLURMEnvironment.job_id()}"
    return None


def global_rank() -> int:
    """This process's global rank as its launcher set it (0 when started by hand); Lightning reads the same variables."""
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank


def on_rank_zero(value, otherwise=None):
    """Resolver `${on_rank_zero:A,B}`: A in global rank 0, B in the other processes (what only one process may write)."""
    return value if global_rank() == 0 else otherwise


def rank_suffix() -> str:
    """Resolver `${rank_suffix:}`: "" in global rank 0, ".rank<N>" in the others (names of per-rank files)."""
    rank = global_rank()
    return "" if rank == 0 else f".rank{rank}"
