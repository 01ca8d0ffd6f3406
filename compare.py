"""Compare two checkpoints or prediction files sample by sample: python compare.py A B [split=val] [num_images=24]
(docs/analysis.md); `python compare.py A B` is short for `python compare.py a=A b=B`."""

import sys

import hydra
from omegaconf import DictConfig

from runs.entry_points import (
    discarded_if_nothing_was_trained,
    exit_on_user_error,
    positional_to_overrides,
    register_resolvers,
)

register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from runs.comparing import compare  # torch and Lightning only once Hydra has composed
        from runs.entry_points import quiet_library_notices

        quiet_library_notices()
        compare(cfg)


if __name__ == "__main__":
    sys.argv[1:] = positional_to_overrides(sys.argv[1:], ("a", "b"))
    main()
