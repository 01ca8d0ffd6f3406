"""Hyperparameter search with Optuna: python search.py [hparams_search=mnist_optuna] [search.n_trials=20] [train.py's overrides ...]

One Optuna study, kept in a storage at a fixed place per study name (`logs/search/<study name>/optuna.db` by default):
the same command started again, at the same time (another worker) or later (a continuation), works on the same
study. Every trial is a run of train.py's configuration in its own run directory, pruned by Optuna's pruner on val
top-1 at the end of each validation. `<study dir>/summary.md` lists every trial. runs/search.py, docs/scale.md.

Only Hydra is imported before it has composed, as in train.py: help, `--cfg` and a mistyped value answer at once.
"""

import os

import hydra
from omegaconf import DictConfig

from runs.entry_points import exit_on_user_error
from runs.run_dir import discarded_if_nothing_was_trained, register_resolvers

# Started by srun as one task of several (one worker per node), this process is a worker of its own, not one rank of
# a distributed run: Lightning (its rank, its SLURM environment) and the run directory's name must not see the tasks.
for variable in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID"):
    os.environ.pop(variable, None)
register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="search")
def main(cfg: DictConfig) -> None:
    # a refused start leaves no worker folder behind, as train.py leaves no run directory
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from runs.search import run_search

        run_search(cfg)


if __name__ == "__main__":
    main()
