"""Any torchvision classifier, its stem (first Conv2d) rebuilt for the images' channels or small images, and weights
copied in all but the head. Custom: torchvision's builders take neither other channels nor small images."""

import difflib
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision.models
from torch import Tensor, nn
from torchvision.models import VisionTransformer, get_model, get_model_weights, list_models

from checkpoints.loading import check_same_network, read_weights_only
from user_errors import UserError

log = logging.getLogger(__name__)
SMALL_STEM = {"kernel_size": (3, 3), "stride": (1, 1), "padding": (1, 1)}
# the small stem also drops the first max-pool of these (VGG's five pools leave nothing of 28x28)
DROPS_POOL = ("vgg", "resnet", "wide_resnet", "resnext", "densenet", "googlenet")
# without auxiliary classifiers: forward returns the logits alone, in training too
WITHOUT_AUX = {"googlenet", "inception_v3"}
# a train.py checkpoint stores this network as ImageClassifier.net, torchvision's model as its `model`
CHECKPOINT_PREFIX = "net.model."


class TorchvisionNet(nn.Module):
    """torchvision's `arch` for `input_shape` and `num_classes`; the options are documented in conf/model_base/torchvision.yaml."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        arch: str,
        small_input_stem: bool | None = None,
        batch_norm: bool = False,
        pretrained: bool = False,
        weights_path: str | None = None,
        freeze_backbone: bool = False,
        head_lr: float | None = None,
    ):
        super().__init__()
        names, (channels, height, width) = list_models(module=torchvision.models), input_shape
        if arch not in names:
            close = difflib.get_close_matches(arch, names, n=5, cutoff=0.5)
            hint = f"did you mean {' or '.join(close)}?" if close else "see list_models(module=torchvision.models)."
            raise UserError(f"model.arch={arch} is not a torchvision image classification model: {hint}")
        if batch_norm and f"{arch}_bn" not in names:
            raise UserError(
                f"model.batch_norm=true asks for {arch}_bn, but torchvision has BatchNorm variants for VGG, not for {arch}: leave it false."
            )
        if pretrained and weights_path:
            raise UserError("model.pretrained=true and model.weights_path both give the weights: set only one of them.")
        if freeze_backbone and not (pretrained or weights_path):
            raise UserError(
                "model.freeze_backbone=true freezes loaded weights, but none are loaded: set model.pretrained=true or model.weights_path=FILE."
            )
        name, options = f"{arch}_bn" if batch_norm else arch, {}
        if arch in WITHOUT_AUX:  # torchvision turns transform_input on with its weights, which expect RGB in [-1, 1]
            options = {"aux_logits": False, "init_weights": True, "transform_input": bool(pretrained and channels == 3)}
        if arch.startswith("vit_"):
            patch = int(arch.rsplit("_", 1)[1])
            if height != width or height % patch:
                raise UserError(
                    f"model.arch={arch} cuts square images into {patch}x{patch} patches and cannot take {height}x{width} images; resize the data to a multiple of {patch} or choose a convolutional model."
                )
            options = {"image_size": height}  # position embeddings for the dataset's image size
        self.model, self.head_lr = get_model(name, num_classes=num_classes, **options), head_lr
        # every torchvision classifier ends in a Linear (SqueezeNet: a Conv2d) with num_classes outputs
        outputs = lambda module: getattr(module, "out_features", getattr(module, "out_channels", None))  # noqa: E731
        self.head_name = [path for path, module in self.model.named_modules() if outputs(module) == num_classes][-1]

        stem_name = next(path for path, module in self.model.named_modules() if isinstance(module, nn.Conv2d))
        stem = self.model.get_submodule(stem_name)
        # null: small from scratch, the ImageNet stem for weights learned with it; ViT's stem cuts patches, one token each
        small = not (pretrained or weights_path) if small_input_stem is None else small_input_stem
        small = small and not isinstance(self.model, VisionTransformer)
        geometry = SMALL_STEM if small else {key: getattr(stem, key) for key in SMALL_STEM}
        if channels != stem.in_channels or any(value != getattr(stem, key) for key, value in geometry.items()):
            new_stem = nn.Conv2d(channels, stem.out_channels, bias=stem.bias is not None, **geometry)
            nn.init.kaiming_normal_(new_stem.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's stems
            if new_stem.bias is not None:
                nn.init.zeros_(new_stem.bias)
            self.model.set_submodule(stem_name, new_stem)
        if small and arch.startswith(DROPS_POOL):
            pool = next(path for path, module in self.model.named_modules() if isinstance(module, nn.MaxPool2d))
            self.model.set_submodule(pool, nn.Identity())
        if pretrained:
            origin = f"torchvision's ImageNet weights of {name} ({get_model_weights(name).DEFAULT})"
            self._load(imagenet_state_dict(name), origin, stem_name, small, freeze_backbone)
        elif weights_path:
            self._load(read_weights_file(weights_path), str(weights_path), stem_name, small, freeze_backbone)

    def _load(self, source: dict[str, Tensor], origin: str, stem: str, small: bool, freeze: bool) -> None:
        """`source` copied in but the head (and a small stem); a grey stem sums RGB filters, an RGB one spreads grey."""
        target, fitted = self.model.state_dict(), ""
        weight, wanted = source.get(f"{stem}.weight"), target[f"{stem}.weight"].shape
        new_stem = weight is not None and small and weight.shape[2:] != wanted[2:]
        fresh = (f"{self.head_name}.", f"{stem}.") if new_stem else (f"{self.head_name}.",)
        # parts the network was built without (GoogLeNet's auxiliary classifiers) are None
        keep = lambda key: not key.startswith(fresh) and getattr(self.model, key.split(".")[0], 0) is not None  # noqa: E731
        source = {key: value for key, value in source.items() if keep(key)}
        if not new_stem and weight is not None and weight.shape[1] != wanted[1] and 1 in (weight.shape[1], wanted[1]):
            fit = weight.sum(1, keepdim=True) if wanted[1] == 1 else weight.expand(-1, wanted[1], -1, -1) / wanted[1]
            source[f"{stem}.weight"] = fit
            fitted = f"; {stem} loaded with its {weight.shape[1]} input channels fitted to {wanted[1]}"
        expected = {key: value for key, value in target.items() if not key.startswith(fresh)}
        advice = "use weights of the same architecture, with model.small_input_stem set as when they were trained"
        check_same_network(expected, source, origin, advice)
        self.model.load_state_dict(source, strict=False)
        for path, parameter in self.model.named_parameters():
            parameter.requires_grad = not freeze or path.startswith(fresh)
        parts = [(path, [p.requires_grad for p in child.parameters()]) for path, child in self.model.named_children()]
        frozen = [f"{path} (partly)" if any(grads) else path for path, grads in parts if grads and not all(grads)]
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        log.info(
            f"Transfer learning: weights from {origin}; replaced (freshly initialised): {', '.join(prefix[:-1] for prefix in fresh)}{fitted}; "
            f"frozen: {', '.join(frozen) or 'nothing'}; parameters: {trainable:,} trainable, {total - trainable:,} frozen"
        )

    def forward(self, images):
        return self.model(images)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters for the optimizer; with head_lr, the head in a group of its own with that learning rate."""
        trainable = [(path, p) for path, p in self.model.named_parameters() if p.requires_grad]
        in_head = lambda path: self.head_lr is not None and path.startswith(f"{self.head_name}.")  # noqa: E731
        groups = [{"params": [p for path, p in trainable if not in_head(path)]}]
        groups += [{"params": [p for path, p in trainable if in_head(path)], "lr": self.head_lr}]
        return [group for group in groups if group["params"]]


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """torchvision's default ImageNet weights of `name`, from the torch hub cache or downloaded into it."""
    weights = get_model_weights(name).DEFAULT
    try:
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
        raise UserError(
            f"The ImageNet weights of {name} cannot be read from the torch cache ({cached}) and could not be downloaded "
            f"({error.__class__.__name__}: {' '.join(str(error).split())}): copy {weights.url} there, over a damaged "
            "file (TORCH_HOME moves the cache), or pass model.weights_path=FILE."
        ) from error


def read_weights_file(path: str) -> dict[str, Tensor]:
    """A state dict saved with torch.save, or the torchvision network's weights from a checkpoint of train.py."""
    expected = "a state dict saved with torch.save(model.state_dict()) or a checkpoint of train.py"
    content = read_weights_only(path, "model.weights_path", expected)
    if isinstance(content, dict) and "state_dict" in content:  # a checkpoint: its torchvision network's weights
        state = content["state_dict"]
        content = {
            key.removeprefix(CHECKPOINT_PREFIX): state[key] for key in state if key.startswith(CHECKPOINT_PREFIX)
        }
    if not isinstance(content, dict) or not content or not all(isinstance(value, Tensor) for value in content.values()):
        raise UserError(
            f"{path} holds no torchvision-backed network (neither a state dict nor a checkpoint of train.py with '{CHECKPOINT_PREFIX}*' weights): pass model.weights_path={expected} of the same architecture."
        )
    return content
