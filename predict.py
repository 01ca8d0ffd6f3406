"""Predict the classes of image files: python predict.py ckpt_path=PATH|exported=PATH IMAGE_OR_FOLDER [...] [top_k=5]
(docs/export.md); bare paths and image=PATH arguments become one images=[...] list."""

from omegaconf import DictConfig

from runs.entry_points import entry_point


@entry_point("predict", gathered="image")
def main(cfg: DictConfig) -> None:
    from runs.deploying import predict  # torch and Lightning only once Hydra has composed

    predict(cfg)
