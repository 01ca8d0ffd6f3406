"""Stores the global random number generators (torch, CUDA, numpy, python) in every checkpoint and restores them on resume.

Lightning restores the weights, optimizer, schedulers and loops but not these, so without this a resumed
run would draw other dropout masks and augmentations than the uninterrupted run. The states are kept as
tensors and plain numbers, so the checkpoint still loads with torch.load(weights_only=True).
"""

import logging
import random
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)


def capture_rng_states() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "has_gauss": has_gauss, "cached_gaussian": cached_gaussian},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    )
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss_next"]))
    cuda_states = states.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


class RNGStateCheckpoint(Callback):
    """Saves each process's generator states with every checkpoint; applies them when training (re)starts.

    They are applied in `on_train_start`, not when the checkpoint is read: Lightning draws random numbers
    in between (e.g. tracing the TensorBoard graph through dropout), which the uninterrupted run drew
    before its first epoch, not at this point.
    """

    def __init__(self) -> None:
        self._states_to_restore: list[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        states = capture_rng_states()
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed and torch.distributed.get_world_size() > 1:  # one entry per process: each rank resumes its own streams
            per_rank: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(per_rank, states)
            return {"per_rank": per_rank}
        return {"per_rank": [states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._states_to_restore = state_dict["per_rank"]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._states_to_restore is None:
            return
        per_rank, self._states_to_restore = self._states_to_restore, None
        if len(per_rank) != trainer.world_size:
            log.warning(f"The checkpoint holds random states of {len(per_rank)} processes, this run has {trainer.world_size}: each process resumes with those of process 0.")
        restore_rng_states(per_rank[trainer.global_rank] if len(per_rank) == trainer.world_size else per_rank[0])

