"""Compare two checkpoints or prediction files sample by sample: python compare.py A B [split=val] [num_images=24]
(docs/analysis.md); `python compare.py A B` is short for `python compare.py a=A b=B`."""

from omegaconf import DictConfig

from runs.entry_points import entry_point


@entry_point("compare", positional=("a", "b"))
def main(cfg: DictConfig) -> None:
    from runs.comparing import compare  # torch and Lightning only once Hydra has composed

    compare(cfg)
