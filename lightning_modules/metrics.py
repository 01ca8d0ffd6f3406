"""The classifier's epoch metrics: sums kept on the device, a few tens of microseconds per batch, no host sync.

torchmetrics' MulticlassAccuracy(top_k=k) counts true/false positives and negatives per class and first checks
the labels' range (which waits for the device), and MeanMetric checks every update for NaN (which waits too;
its nan_strategy="disable" skips the check but then drops the weights, in torchmetrics 1.9).
TopKAccuracy serves top-1 and top-5 from one topk per batch: it counts how many labels stand at each rank.
Per batch of 128 on a CPU core (benchmarks/components.py): torchmetrics' three metrics 0.29 ms, a
TopKAccuracy per k and a Mean 0.09 ms, one TopKAccuracy for both and a Mean 0.05 ms.
torchmetrics' Metric still resets these, moves them with the module and sums them across DDP processes when
they are computed.
"""

from collections.abc import Mapping

import torch
from torch import Tensor
from torchmetrics import Metric


class TopKAccuracy(Metric):
    """For each name -> k of `top_k`: the fraction of samples whose label is among the k highest logits."""

    full_state_update = False

    def __init__(self, top_k: Mapping[str, int]):
        super().__init__()
        self.top_k = dict(top_k)
        self.max_k = max(self.top_k.values())
        # hits_at_rank[r]: samples whose label had the (r+1)-th highest logit; top-k hits are the first k summed
        self.add_state("hits_at_rank", torch.zeros(self.max_k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        ranked = logits.topk(self.max_k, dim=1).indices
        self.hits_at_rank += (ranked == labels[:, None]).sum(dim=0)  # a label stands at one rank at most
        self.total += len(labels)

    def compute(self) -> dict[str, Tensor]:
        within_top = self.hits_at_rank.cumsum(dim=0) / self.total
        return {name: within_top[k - 1] for name, k in self.top_k.items()}


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
