"""Recurrent classifiers (vanilla RNN, LSTM, GRU) that read an image as a sequence of its rows.

MNIST is 28 steps of 28 features; a 3x64x64 Tiny-ImageNet image is 64 steps of 64x3 = 192 features (each
pixel's channels side by side). torch's nn.RNN/LSTM/GRU do the recurrence, deep (num_layers) and
bidirectional; a linear head reads either the final hidden state of the last layer (both directions,
concatenated) or the outputs of every step pooled over time.
"""

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
READOUTS = ("last", "mean", "max")


class RowsAsSequence(nn.Module):
    """(B, C, H, W) images -> (B, H, W*C) sequences: one step per row."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.permute(0, 2, 3, 1).flatten(2)


class RowRNN(nn.Module):
    """cell: rnn, lstm or gru. readout: last (final hidden state), mean or max (of the outputs over all steps).
    nonlinearity: tanh or relu, for the vanilla RNN (LSTM and GRU have their gates)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        readout: str = "last",
        nonlinearity: str = "tanh",
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(CELLS)}")
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose one of {list(READOUTS)}")
        channels, _, width = input_shape
        cell_options = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.to_sequence = RowsAsSequence()
        self.rnn = CELLS[cell](
            width * channels,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout,
            bidirectional=bidirectional,
            **cell_options,
        )
        self.directions = 2 if bidirectional else 1
        self.readout = readout
        self.head = nn.Linear(self.directions * hidden_size, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs, state = self.rnn(self.to_sequence(images))
        if self.readout == "last":
            hidden = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (hidden, cell)
            # (layers * directions, B, H): the last layer's final states, forward then backward, side by side
            features = hidden[-self.directions :].transpose(0, 1).flatten(1)
        elif self.readout == "mean":
            features = outputs.mean(dim=1)
        else:
            features = outputs.amax(dim=1)
        return self.head(features)
