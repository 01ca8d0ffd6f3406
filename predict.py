"""Predict the classes of image files: python predict.py ckpt_path=PATH|exported=PATH IMAGE_OR_FOLDER [...] [top_k=5]
(docs/export.md); bare paths and image=PATH arguments become one images=[...] list."""

import sys

import hydra
from omegaconf import DictConfig

from runs.entry_points import discarded_if_nothing_was_trained, exit_on_user_error, quoted, register_resolvers


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


register_resolvers()  # conf/hydra/default.yaml uses ${run_dir:...}: registered before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(), discarded_if_nothing_was_trained(cfg.paths.output_dir):
        from runs.deploying import predict  # torch and Lightning only once Hydra has composed
        from runs.entry_points import quiet_library_notices

        quiet_library_notices()
        predict(cfg)


if __name__ == "__main__":
    sys.argv[1:] = gather_images(sys.argv[1:])
    main()
