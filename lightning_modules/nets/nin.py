"""Network in Network (Lin, Chen & Yan, 2013), in the ImageNet form of Dive into Deep Learning (chapter 8.3).

Four NiN blocks, each a convolution followed by two 1x1 convolutions (the "micro network"), all with ReLU;
max-pooling between the first three. The last block has one output channel per class, and global average
pooling turns those maps into the logits: no fully connected layer at all.

The first block is AlexNet's 11x11 stride-4 convolution, which leaves nothing of a 28x28 image after the
pools; `small_input_stem` (the default, as for the torchvision models trained from scratch) makes it a 3x3
stride-1 convolution.
"""

from torch import nn

from lightning_modules.nets.layers import check_input_fits


def nin_block(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
    )


class NiN(nn.Sequential):
    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, small_input_stem: bool = True, dropout: float = 0.5
    ):
        stem = (3, 1, 1) if small_input_stem else (11, 4, 0)
        super().__init__(
            nin_block(input_shape[0], 96, *stem),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nin_block(96, 256, kernel_size=5, stride=1, padding=2),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nin_block(256, 384, kernel_size=3, stride=1, padding=1),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Dropout(dropout),
            nin_block(384, num_classes, kernel_size=3, stride=1, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        check_input_fits(self, input_shape, small_input_stem)
