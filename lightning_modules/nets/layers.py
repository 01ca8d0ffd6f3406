"""Small building blocks the hand-written networks share."""

import torch
from torch import nn

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
