"""Any classification architecture torchvision implements (`torchvision.models.list_models(module=torchvision.models)`:
AlexNet, VGG, GoogLeNet, ResNet, DenseNet, MobileNet, EfficientNet, SqueezeNet, ShuffleNetV2, RegNet, ConvNeXt,
ViT, ...), shaped for the dataset by one adapter:

1. torchvision builds the architecture with the dataset's number of classes;
2. the stem (the first convolution) is rebuilt for the dataset's input channels and, with the small-input
   stem, as a 3x3 stride-1 convolution; families whose stem also max-pools drop that pool (table below);
3. weights, if asked for (ImageNet through torchvision's weights API, or a file), are copied in, except the
   head (the last layer that outputs the classes: a Linear, or SqueezeNet's 1x1 Conv2d), which is new, and a small stem they do not fit (ImageNet's 7x7 stem, say);
   a 3-channel stem is summed over its colour channels for grey images;
4. optionally everything loaded is frozen, and the head gets its own learning rate (`parameter_groups`).

The stem is the first Conv2d and the head the last Linear or Conv2d with num_classes outputs, found in the built
model. What differs between the families is data, in ARCHITECTURES; an architecture not listed there gets the
default Family (the tests check that the listed ones' parameter counts match torchvision's).
"""

import difflib
import logging
from dataclasses import dataclass, field
from typing import Any

import torchvision.models
from torch import nn
from torchvision.models import VisionTransformer, get_model, get_model_weights, list_models

from lightning_modules.nets.layers import check_input_fits
from lightning_modules.nets.transfer import (
    copy_transferable_weights,
    imagenet_state_dict,
    read_weights_file,
    transfer_summary,
)
from user_errors import UserError

log = logging.getLogger(__name__)

SMALL_STEM = {"kernel_size": (3, 3), "stride": (1, 1), "padding": (1, 1)}


@dataclass(frozen=True)
class Family:
    # The small stem also drops the first max-pool: for stems that halve the image twice (stride-2 convolution,
    # then stride-2 pool), so that the small stem keeps the image 4x larger like the 3x3 stride-1 AlexNet stem,
    # and for VGG, whose five pools would take a 28x28 image down to nothing.
    small_stem_drops_pool: bool
    # torchvision's builder of the same architecture with BatchNorm (model.batch_norm=true)
    batch_norm_variant: str | None = None
    # options for torchvision's builder
    options: dict[str, Any] = field(default_factory=dict)
    # options torchvision sets itself when it loads ImageNet weights, where they apply to RGB input
    rgb_pretrained_options: dict[str, Any] = field(default_factory=dict)
    # tensors in torchvision's ImageNet file of parts this adapter builds without
    unused_pretrained: tuple[str, ...] = ()


ARCHITECTURES = {
    "alexnet": Family(small_stem_drops_pool=False),
    "vgg11": Family(small_stem_drops_pool=True, batch_norm_variant="vgg11_bn"),
    "vgg16": Family(small_stem_drops_pool=True, batch_norm_variant="vgg16_bn"),
    # without auxiliary classifiers: forward returns the logits alone, in training too
    "googlenet": Family(
        small_stem_drops_pool=True,
        options={"aux_logits": False, "init_weights": True},
        rgb_pretrained_options={"transform_input": True},  # the ported weights expect inputs in [-1, 1]
        unused_pretrained=("aux1.", "aux2."),
    ),
    "resnet18": Family(small_stem_drops_pool=True),
    "resnet34": Family(small_stem_drops_pool=True),
    "resnet50": Family(small_stem_drops_pool=True),
    "densenet121": Family(small_stem_drops_pool=True),
    "mobilenet_v2": Family(small_stem_drops_pool=False),
    "efficientnet_b0": Family(small_stem_drops_pool=False),
}


class TorchvisionNet(nn.Module):
    """torchvision's `arch`, for images of `input_shape` and `num_classes` classes.

    small_input_stem: true: 3x3 stride-1 first convolution (and no stem max-pool where the table says so);
        false: the ImageNet stem; null: small when training from scratch, the ImageNet stem when loading
        weights, which were learned with it.
    batch_norm: the BatchNorm variant (VGG).
    pretrained: torchvision's default ImageNet weights (from the torch hub cache, downloaded if absent).
    weights_path: a state dict of torchvision's `arch`, or a checkpoint of train.py with this model.
    freeze_backbone: train only what was not loaded (the head, a new small stem).
    head_lr: learning rate of the head; null: the optimizer's.
    """

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
        family = ARCHITECTURES.get(arch) or Family(
            small_stem_drops_pool=False, options=_size_options(arch, input_shape)
        )
        if batch_norm and not family.batch_norm_variant:
            with_variant = sorted(name for name, other in ARCHITECTURES.items() if other.batch_norm_variant)
            raise UserError(
                f"model.batch_norm=true selects a BatchNorm variant, which torchvision has for {with_variant}, not for {arch}; leave it false."
            )
        if pretrained and weights_path:
            raise UserError("model.pretrained=true and model.weights_path both give the weights: set only one of them.")
        loads_weights = bool(pretrained or weights_path)
        if freeze_backbone and not loads_weights:
            raise UserError(
                "model.freeze_backbone=true freezes loaded weights, but none are loaded: set model.pretrained=true or model.weights_path=FILE."
            )
        small = not loads_weights if small_input_stem is None else small_input_stem
        name = family.batch_norm_variant if batch_norm else arch
        in_channels = input_shape[0]

        options = {**family.options, **(family.rgb_pretrained_options if pretrained and in_channels == 3 else {})}
        self.model = get_model(name, num_classes=num_classes, **options)
        self.head_name = _head_path(self.model, num_classes, arch)
        self.head_lr = head_lr
        stem_name = _first_path(self.model.named_modules(), nn.Conv2d)
        stem = self.model.get_submodule(stem_name)
        if isinstance(self.model, VisionTransformer):
            small = False  # the stem cuts the image into patches, one token each: a 3x3 stride-1 stem would make 4,096 of 64x64
        new_stem_geometry = small and _geometry(stem) != SMALL_STEM  # VGG's stem is 3x3 stride 1 already
        geometry = SMALL_STEM if small else _geometry(stem)
        if (in_channels, geometry) != (stem.in_channels, _geometry(stem)):
            self.model.set_submodule(stem_name, _new_stem(in_channels, stem, geometry))
        if small and family.small_stem_drops_pool:
            self.model.set_submodule(_first_path(self.model.named_modules(), nn.MaxPool2d), nn.Identity())
        check_input_fits(self.model, input_shape, small)

        if loads_weights:
            source = imagenet_state_dict(name) if pretrained else read_weights_file(weights_path)
            origin = (
                f"torchvision's ImageNet weights of {name} ({get_model_weights(name).DEFAULT})"
                if pretrained
                else str(weights_path)
            )
            fresh = copy_transferable_weights(
                self.model, source, origin, self.head_name, stem_name, new_stem_geometry, family.unused_pretrained
            )
            if freeze_backbone:
                for parameter_name, parameter in self.model.named_parameters():
                    parameter.requires_grad = parameter_name.startswith(fresh)
            source_channels = source[f"{stem_name}.weight"].shape[1]
            stem_fitted = (
                None if f"{stem_name}." in fresh or source_channels == in_channels else (source_channels, in_channels)
            )
            log.info(transfer_summary(self.model, origin, fresh, stem_name, stem_fitted))

    def forward(self, images):
        return self.model(images)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters for the optimizer; with head_lr, the head in a group of its own with that learning rate."""
        trainable = [(name, parameter) for name, parameter in self.model.named_parameters() if parameter.requires_grad]
        if self.head_lr is None:
            return [{"params": [parameter for _, parameter in trainable]}]
        in_head = f"{self.head_name}."
        groups = [
            {"params": [parameter for name, parameter in trainable if not name.startswith(in_head)]},
            {"params": [parameter for name, parameter in trainable if name.startswith(in_head)], "lr": self.head_lr},
        ]
        return [group for group in groups if group["params"]]


def classification_architectures() -> list[str]:
    """Names of torchvision's image classification builders (not detection, segmentation, video or quantized ones)."""
    return list_models(module=torchvision.models)


def _size_options(arch: str, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """Builder options of an architecture outside ARCHITECTURES; a UserError for a name that is not one."""
    names = classification_architectures()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5, cutoff=0.5)
        hint = (
            f"did you mean {' or '.join(close)}?"
            if close
            else "see torchvision.models.list_models(module=torchvision.models)."
        )
        raise UserError(f"model.arch={arch} is not a torchvision image classification model: {hint}")
    if arch.startswith("vit_"):
        _, height, width = input_shape
        patch = int(arch.rsplit("_", 1)[1])
        if height != width or height % patch:
            raise UserError(
                f"model.arch={arch} cuts square images into {patch}x{patch} patches and cannot take {height}x{width} images; resize the data to a multiple of {patch} or choose a convolutional model."
            )
        return {"image_size": height}  # the position embeddings are built for the dataset's image size
    if arch.startswith("inception"):
        return {"aux_logits": False, "init_weights": True}  # forward returns the logits alone, as for GoogLeNet
    return {}


def _head_path(model: nn.Module, num_classes: int, arch: str) -> str:
    """The classifier: the last Linear or Conv2d (SqueezeNet's 1x1 convolution) that outputs num_classes values."""
    for name, module in reversed(list(model.named_modules())):
        outputs = (
            module.out_features
            if isinstance(module, nn.Linear)
            else module.out_channels
            if isinstance(module, nn.Conv2d)
            else None
        )
        if outputs == num_classes:
            return name
    raise UserError(
        f"model.arch={arch} has no final Linear or Conv2d with {num_classes} outputs that this adapter could treat as its head; choose another architecture."
    )


def _first_path(named_modules, kind: type[nn.Module]) -> str:
    return next(name for name, module in named_modules if isinstance(module, kind))


def _geometry(conv: nn.Conv2d) -> dict[str, tuple[int, int]]:
    return {"kernel_size": conv.kernel_size, "stride": conv.stride, "padding": conv.padding}


def _new_stem(in_channels: int, stem: nn.Conv2d, geometry: dict[str, tuple[int, int]]) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, stem.out_channels, bias=stem.bias is not None, **geometry)
    nn.init.kaiming_normal_(
        conv.weight, mode="fan_out", nonlinearity="relu"
    )  # as torchvision initialises most of these stems
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv
