"""Train a network: python train.py [model=lenet] [data=mnist] [optimizer=adam] [trainer.max_epochs=5] ...

Only Hydra is imported until it has composed: help, `--cfg`, completion and a mistyped value answer without torch.
"""

from omegaconf import DictConfig

from runs.entry_points import entry_point


@entry_point("train")
def main(cfg: DictConfig) -> float | None:
    from runs.config_check import check_config

    check_config(cfg)  # before Lightning is imported: a mistyped value is refused at once
    from runs.build import train

    return train(cfg).get("best_val_top1")  # a multirun's job result (status.json)
