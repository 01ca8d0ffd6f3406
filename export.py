"""Export a checkpoint for deployment: python export.py ckpt_path=PATH format=onnx|torchscript|torch_export
(docs/export.md): model.<onnx|ts|pt2> and its contract model.json in this command's run directory."""

from omegaconf import DictConfig

from runs.entry_points import entry_point


@entry_point("export")
def main(cfg: DictConfig) -> None:
    from runs.deploying import export_checkpoint  # torch and Lightning only once Hydra has composed

    export_checkpoint(cfg)
