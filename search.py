"""Optuna search: python search.py [hparams_search=mnist_optuna] [search.n_trials=20] [train.py's overrides ...]

The same command again, at once or later, is another worker on the same study (docs/scale.md)."""

import os

import hydra
from omegaconf import DictConfig

from runs.entry_points import discarded_if_nothing_was_trained, exit_on_user_error, register_resolvers

# a SLURM task is a worker of its own, not one rank of a distributed run: Lightning and the run directory's name
# must not see the job's other tasks
for variable in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID"):
    os.environ.pop(variable, None)
register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}


@hydra.main(version_base="1.3", config_path="conf", config_name="search")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from runs.search import run_search

        run_search(cfg)


if __name__ == "__main__":
    main()
