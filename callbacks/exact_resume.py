"""What Lightning does not restore on resume: the global random generators and the training loader's place in its epoch.

Lightning restores the weights, optimizer, schedulers and loops. Without the random generators (torch,
CUDA, numpy, python) a resumed run would draw other dropout masks and augmentations than an uninterrupted
one; without the loader's position a run resumed mid-epoch would start that epoch's batches over.
(Lightning can save a loader's state itself, but it never restores it when configure_optimizers has
asked for `trainer.estimated_stepping_batches`, as ours does: that sets the loader up before the
checkpoint is read.) Everything is kept as tensors and plain numbers, so checkpoints still load with
torch.load(weights_only=True).
"""

import logging
import random
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer

from datamodules.resumable_loader import ResumableDataLoader

log = logging.getLogger(__name__)


def capture_rng_states() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": position,
            "has_gauss": has_gauss,
            "cached_gaussian": cached_gaussian,
        },
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss_next"]))
    cuda_states = states.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


class ExactResume(Callback):
    """Saves each process's generator states and the training loader's position with every checkpoint;
    applies them when training (re)starts.

    They are applied in `on_train_start`, not when the checkpoint is read: Lightning draws random numbers
    in between (e.g. tracing the TensorBoard graph through dropout), which the uninterrupted run drew
    before its first epoch, not at this point; and the loader exists by then but has not started its epoch.
    """

    def __init__(self) -> None:
        self._trainer: Trainer | None = None
        self._to_restore: dict[str, Any] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _train_loader(self) -> ResumableDataLoader | None:
        loader = self._trainer.train_dataloader if self._trainer is not None else None
        return loader if isinstance(loader, ResumableDataLoader) else None

    def state_dict(self) -> dict[str, Any]:
        states = capture_rng_states()
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if (
            distributed and torch.distributed.get_world_size() > 1
        ):  # one entry per process: each rank resumes its own streams
            per_rank: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(per_rank, states)
        else:
            per_rank = [states]
        loader = self._train_loader()
        return {"rng_per_rank": per_rank, "train_loader": loader.position() if loader is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._to_restore is None:
            return
        state, self._to_restore = self._to_restore, None
        per_rank = state["rng_per_rank"]
        if len(per_rank) != trainer.world_size:
            log.warning(
                f"The checkpoint holds random states of {len(per_rank)} processes, this run has {trainer.world_size}: each process resumes with those of process 0."
            )
        restore_rng_states(per_rank[trainer.global_rank] if len(per_rank) == trainer.world_size else per_rank[0])
        loader = self._train_loader()
        if loader is not None and state["train_loader"] is not None:
            loader.resume_from(state["train_loader"])
