"""The classifier's epoch loss: a weighted mean kept on the device.

torchmetrics' MeanMetric drops NaN values (checking every update, which waits for the device) or, with
nan_strategy="disable", drops the weights (torchmetrics 1.9); a diverged epoch must show as NaN instead.
torchmetrics' Metric still resets it, moves it with the module and sums it across DDP processes when computed.
"""

import torch
from torch import Tensor
from torchmetrics import Metric


class Mean(Metric):
    """The weighted mean of every value passed to `update`."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("sum", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("weight", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, values: Tensor, weight: float = 1.0) -> None:
        """values: one value or a batch of them, each counted `weight` times (a batch's mean loss: its batch size)."""
        self.sum += values.sum() * weight
        self.weight += values.numel() * weight

    def compute(self) -> Tensor:
        return self.sum / self.weight
