"""Predict the class of image files: python predict.py ckpt_path=PATH IMAGE_OR_FOLDER [...] [top_k=5]

Also `exported=PATH` (a model.<onnx|ts|pt2> written by export.py) instead of ckpt_path, and `image=PATH`
(repeatable) or `images=[a.png,b.png]` instead of bare paths; a folder stands for the image files in it.
Any size or mode (grayscale, RGB, RGBA, palette; PNG, JPEG, ...) is brought to the network's input as
deployment/image_input.py says. Prints the top-k classes with their probabilities per image and writes them to
predictions.csv in this command's run directory. An image that cannot be read is named in one sentence on
stderr, the others are still predicted, and the command then exits with code 2.
"""

import sys

import hydra
from omegaconf import DictConfig

from runs.entry_points import exit_on_user_error, quoted
from runs.run_dir import discarded_if_nothing_was_trained, register_resolvers


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
    if not images:
        return rest
    return rest + [f"images=[{','.join(quoted(image) for image in images)}]"]


register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from runs.entry_points import quiet_library_notices
        from runs.predicting import predict  # torch and Lightning only once Hydra has composed

        quiet_library_notices()
        predict(cfg)


if __name__ == "__main__":
    sys.argv[1:] = gather_images(sys.argv[1:])
    main()
