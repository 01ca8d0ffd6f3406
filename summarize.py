"""List a network's layers as train.py would build it: python summarize.py model=alexnet data=fake (printed and in layers.txt)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from runs.entry_points import discarded_if_nothing_was_trained, exit_on_user_error, register_resolvers

register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="summarize")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from callbacks.layer_report import classifier_layer_report  # torch and Lightning only once Hydra has composed
        from runs.build import build_datamodule, build_module

        report = classifier_layer_report(build_module(cfg, build_datamodule(cfg)))
        Path(cfg.paths.output_dir, "layers.txt").write_text(report)
        print(report, end="")


if __name__ == "__main__":
    main()
