"""List a network's layers as train.py would build it: python summarize.py model=alexnet data=fake (printed and in layers.txt)."""

from pathlib import Path

from omegaconf import DictConfig

from runs.entry_points import entry_point


@entry_point("summarize")
def main(cfg: DictConfig) -> None:
    from callbacks.layer_report import classifier_layer_report  # torch and Lightning only once Hydra has composed
    from runs.build import build_datamodule, build_module

    report = classifier_layer_report(build_module(cfg, build_datamodule(cfg)))
    Path(cfg.paths.output_dir, "layers.txt").write_text(report)
    print(report, end="")
