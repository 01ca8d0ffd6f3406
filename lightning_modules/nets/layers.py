"""Small building blocks the networks share."""

import itertools
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from user_errors import UserError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def output_size(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Number of features `module` produces for one input of `input_shape` (no batch dimension)."""
    with torch.no_grad():
        return module(torch.zeros(1, *input_shape)).numel()


def meta_forward(net: nn.Module, input_shape: tuple[int, ...]) -> Any:
    """`net`'s output for one input of `input_shape`, computed on the meta device: every shape, no arithmetic.

    Costs nothing even for VGG-16 at 224x224, so networks can check at build time that an input fits.
    Runs in eval mode (BatchNorm of a single input) and leaves `net` in the mode it was in.
    """
    tensors = {name: tensor.to("meta") for name, tensor in itertools.chain(net.named_parameters(), net.named_buffers())}
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return functional_call(net, tensors, (torch.zeros(1, *input_shape, device="meta"),))
    finally:
        net.train(was_training)


def check_input_fits(net: nn.Module, input_shape: tuple[int, ...], small_input_stem: bool) -> None:
    """A UserError, not a traceback at the first step, when `net` (a network with the model.small_input_stem
    switch) shrinks an input of `input_shape` to nothing."""
    try:
        meta_forward(net, input_shape)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        fix = (
            "use larger images or another model"
            if small_input_stem
            else "set model.small_input_stem=true (a 3x3 stride-1 first convolution, for small images)"
        )
        raise UserError(
            f"{type(net).__name__} cannot process a {'x'.join(map(str, input_shape))} input ({reason}): {fix}."
        ) from error
