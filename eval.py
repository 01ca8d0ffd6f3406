"""Evaluate a checkpoint of train.py: python eval.py ckpt_path=PATH [splits=[val,test]] [data.batch_size=...]

Model and data are rebuilt from this conf/ and the checkpoint's recorded choices (docs/trust.md), overrides on top.
"""

from omegaconf import DictConfig

from runs.entry_points import entry_point


@entry_point("eval")
def main(cfg: DictConfig) -> None:
    from runs.build import evaluate  # torch and Lightning only once Hydra has composed

    evaluate(cfg)
