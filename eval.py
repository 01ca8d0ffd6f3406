"""Evaluate a checkpoint of train.py: python eval.py ckpt_path=PATH [splits=[val,test]] [data.batch_size=...]

Model and data are rebuilt from this conf/ and the checkpoint's recorded choices (docs/trust.md), overrides on top.
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
