"""Predict the classes of image files: python predict.py ckpt_path=PATH|exported=PATH IMAGE_OR_FOLDER [...] [top_k=5]
(docs/export.md); bare paths and image=PATH arguments become one images=[...] list."""

from omegaconf import DictConfig

from runs.entry_points import entry_point, quoted


def gather_images(arguments: list[str]) -> list[str]:
    """Bare paths and `image=PATH` arguments (Hydra takes a key once) -> one `images=[...]` override, quoted for Hydra."""
    images, rest = [], []
    for argument in arguments:
        follows_a_flag = bool(rest) and rest[-1].startswith("-")  # e.g. the `job` of Hydra's `--cfg job`
        if argument.startswith("image="):
            images.append(argument.removeprefix("image="))
        elif "=" not in argument and not argument.startswith("-") and not follows_a_flag:
            images.append(argument)
        else:
            rest.append(argument)
    return rest + ([f"images=[{','.join(quoted(image) for image in images)}]"] if images else [])


@entry_point("predict", arguments=gather_images)
def main(cfg: DictConfig) -> None:
    from runs.deploying import predict  # torch and Lightning only once Hydra has composed

    predict(cfg)
