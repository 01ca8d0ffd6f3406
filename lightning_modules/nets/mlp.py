"""Multilayer perceptron: the image flattened, then fully connected hidden layers."""

import math

from torch import nn

from lightning_modules.nets.lenet import ACTIVATIONS


class MLP(nn.Sequential):
    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        hidden_sizes: tuple[int, ...] = (256,),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        act, layers, width = ACTIVATIONS[activation], [nn.Flatten()], math.prod(input_shape)
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), *([nn.BatchNorm1d(hidden)] if batch_norm else [])]
            layers += [act(), *([nn.Dropout(dropout)] if dropout else [])]
            width = hidden
        super().__init__(*layers, nn.Linear(width, num_classes))
