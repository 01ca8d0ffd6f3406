"""Export a checkpoint for deployment: python export.py ckpt_path=PATH format=onnx|torchscript|torch_export
(docs/export.md): model.<onnx|ts|pt2> and its contract model.json in this command's run directory."""

import hydra
from omegaconf import DictConfig

from runs.entry_points import discarded_if_nothing_was_trained, exit_on_user_error, register_resolvers

register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from runs.deploying import export_checkpoint  # torch and Lightning only once Hydra has composed
        from runs.entry_points import quiet_library_notices

        quiet_library_notices()
        export_checkpoint(cfg)


if __name__ == "__main__":
    main()
