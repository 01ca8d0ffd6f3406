"""LeNet-5 (LeCun et al., 1998): two 5x5 convolutions with pooling, then 120-84-K fully connected.

The first convolution pads by 2 so that a 28x28 MNIST digit is seen as the 32x32 input of the
paper. The defaults are the modern variant (ReLU, max-pooling); `activation=sigmoid pooling=avg`
gives the original. BatchNorm after each convolution and dropout before the fully connected
layers are optional.
"""

from torch import nn

from lightning_modules.nets.layers import make_activation, output_size

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
        if pooling not in POOLING:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {sorted(POOLING)}")

        def conv_block(in_channels: int, out_channels: int, padding: int) -> list[nn.Module]:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=padding, bias=not batch_norm)
            norm = [nn.BatchNorm2d(out_channels)] if batch_norm else []
            return [conv, *norm, make_activation(activation), POOLING[pooling](kernel_size=2, stride=2)]

        self.features = nn.Sequential(
            *conv_block(input_shape[0], 6, padding=2), *conv_block(6, 16, padding=0), nn.Flatten()
        )

        def dropout_layer() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout else []

        self.classifier = nn.Sequential(
            *dropout_layer(),
            nn.Linear(output_size(self.features, input_shape), 120),
            make_activation(activation),
            *dropout_layer(),
            nn.Linear(120, 84),
            make_activation(activation),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
