"""Multilayer perceptron: the image flattened, then fully connected hidden layers."""

import math

from torch import nn

from lightning_modules.nets.layers import make_activation


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
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(make_activation(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
