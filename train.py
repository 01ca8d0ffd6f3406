"""Train a network: python train.py [model=lenet] [data=mnist] [optimizer=adam] [trainer.max_epochs=5] ...

Only Hydra is imported until it has composed: help, `--cfg`, completion and a mistyped value answer without torch.
"""

import math

import hydra
from omegaconf import DictConfig

from runs.entry_points import discarded_if_nothing_was_trained, exit_on_user_error, register_resolvers

register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from runs.config_check import check_config

        check_config(cfg)  # before Lightning is imported: a mistyped value is refused at once
        from runs.build import train
        from runs.entry_points import quiet_library_notices

        quiet_library_notices()
        return train(cfg).get("best_val_top1")
    return math.nan  # only a multirun's failed job gets here (exit_on_user_error): no result for its row of the sweep


if __name__ == "__main__":
    main()
