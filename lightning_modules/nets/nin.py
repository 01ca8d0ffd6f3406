"""Network in Network (Lin et al., 2013) in d2l's ImageNet form: no fully connected layer, global average pooling of
one map per class. `small_input_stem` makes AlexNet's 11x11 stride-4 first convolution 3x3 stride 1, for 28x28."""

from torch import nn


def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    convs = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)]
    convs += [nn.Conv2d(out_channels, out_channels, 1) for _ in range(2)]  # the "micro network" of 1x1 convolutions
    return nn.Sequential(*(layer for conv in convs for layer in (conv, nn.ReLU())))


class NiN(nn.Sequential):
    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, small_input_stem: bool = True, dropout: float = 0.5
    ):
        super().__init__(
            nin_block(input_shape[0], 96, *((3, 1, 1) if small_input_stem else (11, 4, 0))),
            nn.MaxPool2d(3, 2),
            nin_block(96, 256, 5, 1, 2),
            nn.MaxPool2d(3, 2),
            nin_block(256, 384, 3, 1, 1),
            nn.MaxPool2d(3, 2),
            nn.Dropout(dropout),
            nin_block(384, num_classes, 3, 1, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
