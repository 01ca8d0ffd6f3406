"""List a network's layers: python summarize.py model=alexnet data=fake [any override of train.py]

For every layer in the order it runs: qualified name, type, output shape for one input of the dataset's
shape, parameters and multiply-accumulates; then the totals. The network is built as train.py builds it
(input channels, image size and classes from the datamodule); the data itself is not read. The report
is printed and written to layers.txt in this command's run directory.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from runs.entry_points import exit_on_user_error
from runs.run_dir import discarded_if_nothing_was_trained, register_resolvers

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
