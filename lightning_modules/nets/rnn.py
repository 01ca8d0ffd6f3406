"""Recurrent classifiers (torch's RNN, LSTM, GRU) reading an image as a sequence of rows: MNIST is 28 steps of 28
features, 3x64x64 is 64 steps of 192 (each pixel's channels side by side)."""

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
READOUTS = {"last": None, "mean": torch.mean, "max": torch.amax}  # last: the final hidden state


class RowRNN(nn.Module):
    """readout: last (the last layer's final hidden state, both directions), mean or max (of every step's outputs)."""

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
        channels, _, width = input_shape
        options = {"batch_first": True, "dropout": dropout, "bidirectional": bidirectional}
        options |= {"nonlinearity": nonlinearity} if cell == "rnn" else {}  # LSTM and GRU have their gates
        self.rnn = CELLS[cell](width * channels, hidden_size, num_layers, **options)
        self.directions, self.pool = 1 + bidirectional, READOUTS[readout]
        self.head = nn.Linear(self.directions * hidden_size, num_classes)

    @staticmethod
    def to_sequence(images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, H, W*C) sequences: one step per row."""
        return images.permute(0, 2, 3, 1).flatten(2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs, state = self.rnn(self.to_sequence(images))
        if self.pool is not None:
            return self.head(self.pool(outputs, dim=1))
        hidden = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (hidden, cell)
        # (layers * directions, B, H): the last layer's final states, forward then backward, side by side
        return self.head(hidden[-self.directions :].transpose(0, 1).flatten(1))
