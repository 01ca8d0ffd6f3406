"""Export a checkpoint for deployment: python export.py ckpt_path=PATH format=onnx|torchscript|torch_export

The network is rebuilt from the experiment the checkpoint records (as eval.py does, docs/trust.md), wrapped with the
datamodule's normalisation (deployment/exporting.py) and written to model.<onnx|ts|pt2> in this command's run
directory, with model.json beside it: the preprocessing contract (input shape and dtype, normalisation,
class names, format, source checkpoint). The export is then run on a batch of real validation images and
its logits compared with the eager network's; a difference above `tolerance` ends with exit code 2.
"""

import hydra
from omegaconf import DictConfig

from runs.entry_points import exit_on_user_error
from runs.run_dir import discarded_if_nothing_was_trained, register_resolvers

register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from runs.entry_points import quiet_library_notices
        from runs.exporting import export_checkpoint  # torch and Lightning only once Hydra has composed

        quiet_library_notices()
        export_checkpoint(cfg)


if __name__ == "__main__":
    main()
