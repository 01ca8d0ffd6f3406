"""Optuna search: python search.py [hparams_search=mnist_optuna] [search.n_trials=20] [train.py's overrides ...]

The same command again, at once or later, is another worker on the same study (docs/scale.md)."""

import os

from omegaconf import DictConfig

from runs.entry_points import entry_point

# a SLURM task is a worker of its own, not one rank of a distributed run: Lightning and the run directory's name
# must not see the job's other tasks
for variable in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID"):
    os.environ.pop(variable, None)


@entry_point("search")
def main(cfg: DictConfig) -> None:
    from runs.search import run_search

    run_search(cfg)
