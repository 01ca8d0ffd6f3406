"""Compare two checkpoints or prediction files sample by sample: python compare.py A B [split=val] [num_images=16]

A and B are per-sample prediction files (<run dir>/predictions/*.csv, written by train.py and eval.py)
or checkpoints; a checkpoint is first evaluated on `split` by eval.py's own code, into <this run>/a
and <this run>/b. Prints both accuracies, the agreement rate, the right->wrong and wrong->right flips
and the samples judged differently; writes disagreements.csv and contact_sheet.png (the first
right->wrong and wrong->right flips, up to `num_images` in all, half each, the most confident mistakes
first, captioned with the true class and both predictions with their confidence), which is also
logged to TensorBoard. The images come from the dataset rebuilt from this installation's conf/ with the
experiment that the prediction file's JSON sidecar records (runs/evaluation.py), read from the user's own data folder. `python compare.py A B` is short for `python compare.py a=A b=B`.
"""

import sys

import hydra
from omegaconf import DictConfig

from runs.entry_points import exit_on_user_error, positional_to_overrides
from runs.run_dir import discarded_if_nothing_was_trained, register_resolvers

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
