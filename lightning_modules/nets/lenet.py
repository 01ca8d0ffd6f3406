"""LeNet-5 (LeCun et al., 1998), the modern variant by default; `activation=sigmoid pooling=avg` gives the original.
The first convolution pads by 2, so a 28x28 digit is seen as the paper's 32x32 input."""

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
POOLING = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class LeNet5(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        activation: str = "relu",
        pooling: str = "max",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        act, pool = ACTIVATIONS[activation], POOLING[pooling]
        blocks = []
        for in_channels, out_channels, padding in ((input_shape[0], 6, 2), (6, 16, 0)):
            blocks += [nn.Conv2d(in_channels, out_channels, 5, padding=padding, bias=not batch_norm)]
            blocks += [nn.BatchNorm2d(out_channels)] if batch_norm else []
            blocks += [act(), pool(kernel_size=2, stride=2)]
        self.features = nn.Sequential(*blocks, nn.Flatten())
        drop = [nn.Dropout(dropout)] if dropout else []
        with torch.no_grad():
            features = self.features(torch.zeros(1, *input_shape)).shape[1]
        self.classifier = nn.Sequential(
            *drop, nn.Linear(features, 120), act(), *drop, nn.Linear(120, 84), act(), nn.Linear(84, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))
