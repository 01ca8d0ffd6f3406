"""Evaluate a checkpoint of train.py: python eval.py ckpt_path=PATH [splits=[val,test]] [data.batch_size=...]

The model and data are rebuilt from this installation's conf/ with the experiment the checkpoint records (docs/trust.md);
overrides given here apply on top, and the data is read from this command's data folder (data.data_dir).
Writes metrics.json and, for each split, a per-sample prediction file (predictions/<split>-epochNNN.csv).
"""

import hydra
from omegaconf import DictConfig

from runs.entry_points import discarded_if_nothing_was_trained, exit_on_user_error, register_resolvers

register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from runs.build import evaluate  # torch and Lightning only once Hydra has composed
        from runs.entry_points import quiet_library_notices

        quiet_library_notices()
        evaluate(cfg)


if __name__ == "__main__":
    main()
