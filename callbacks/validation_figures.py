"""TensorBoard images of each validation epoch of training: misclassified samples and the confusion matrix.

Cost: per batch, a confusion-matrix update and a merge that keeps a fixed number of samples,
misclassified ones first, all on the device with fixed shapes (no host synchronisation); per epoch,
one confusion-matrix sync across DDP processes and two figures drawn by process 0. The misclassified
samples shown are the first ones of process 0's share of the validation set.
"""

from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.utilities.plot import plot_confusion_matrix

from core.figures import captioned_grid, short_name


class ValidationFigures(Callback):
    """Needs the LightningModule's validation_step to return {"logits": (B, K), ...}.

    Args:
        every_n_epochs: draw the figures of every n-th epoch, 0 for none (each costs a few tenths of a second on a CPU core).
        num_images: misclassified samples in the grid (tag `val/misclassified`).
        max_matrix_classes: up to this many classes the full confusion matrix is drawn with its counts
            (tag `val/confusion_matrix`); above it, a chart of the `num_pairs` most frequent
            (true, predicted) confusions (tag `val/most_confused`).
    """

    def __init__(self, every_n_epochs: int = 1, num_images: int = 16, max_matrix_classes: int = 20, num_pairs: int = 20):
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.max_matrix_classes = max_matrix_classes
        self.num_pairs = num_pairs
        self._writer = None
        self._active = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        tensorboard = next((logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)), None)
        if stage == TrainerFn.FITTING and tensorboard is not None:
            self._writer = tensorboard.experiment
            self.confusion = MulticlassConfusionMatrix(trainer.datamodule.num_classes)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._active = (
            self._writer is not None
            and trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and self.every_n_epochs > 0
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )
        if self._active:
            self.confusion = self.confusion.to(pl_module.device)
            self.confusion.reset()
            self._kept: dict[str, torch.Tensor] | None = None

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self._active:
            return
        logits = outputs["logits"].detach()
        self.confusion.update(logits, batch["label"])
        predicted = logits.argmax(dim=1)
        candidates = {"image": batch["image"], "index": batch["index"], "label": batch["label"], "predicted": predicted, "wrong": predicted != batch["label"]}
        if self._kept is not None:
            candidates = {name: torch.cat([self._kept[name], values]) for name, values in candidates.items()}
        # misclassified first, each group in order of arrival; a fixed number kept
        order = torch.argsort(candidates["wrong"].to(torch.uint8), descending=True, stable=True)[: self.num_images]
        self._kept = {name: values[order] for name, values in candidates.items()}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active:
            return
        matrix = self.confusion.compute()  # every process takes part in the sync
        if not trainer.is_global_zero:
            return
        names = trainer.datamodule.class_names
        step = trainer.global_step
        if len(names) <= self.max_matrix_classes:
            self._writer.add_figure("val/confusion_matrix", confusion_matrix_figure(matrix, names), step)
        else:
            self._writer.add_figure("val/most_confused", most_confused_figure(matrix, names, self.num_pairs), step)
        if self._kept is None:  # no validation batch
            return
        misclassified = {name: values[self._kept["wrong"]].cpu() for name, values in self._kept.items()}
        if len(misclassified["index"]):
            images = _to_uint8(misclassified["image"], trainer.datamodule.mean, trainer.datamodule.std)
            captions = [
                f"#{index}\ntrue: {short_name(names[label])}\npredicted: {short_name(names[predicted])}"
                for index, label, predicted in zip(misclassified["index"].tolist(), misclassified["label"].tolist(), misclassified["predicted"].tolist())
            ]
            self._writer.add_figure("val/misclassified", captioned_grid(images, captions), step)


def confusion_matrix_figure(matrix: torch.Tensor, names: list[str]) -> Figure:
    """The whole matrix, true classes down, predicted across, with the count in each cell."""
    size = 3 + 0.6 * len(names)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axes = figure.add_subplot()
    plot_confusion_matrix(matrix.cpu(), ax=axes, labels=[short_name(name) for name in names])
    axes.set_title(f"validation confusion matrix ({int(matrix.sum())} samples)")
    return figure


def most_confused_figure(matrix: torch.Tensor, names: list[str], num_pairs: int) -> Figure:
    """A bar per (true, predicted) pair of different classes, the `num_pairs` most frequent first."""
    confusions = matrix.cpu().clone()
    confusions.fill_diagonal_(0)
    counts, flat = confusions.flatten().topk(min(num_pairs, confusions.numel()))
    pairs = [(count, divmod(position, len(names))) for count, position in zip(counts.tolist(), flat.tolist()) if count > 0]
    figure = Figure(figsize=(9, 1.5 + 0.35 * max(1, len(pairs))), layout="constrained")
    axes = figure.add_subplot()
    axes.barh(range(len(pairs)), [count for count, _ in pairs])
    axes.set_yticks(range(len(pairs)), [f"{short_name(names[true])} → {short_name(names[predicted])}" for _, (true, predicted) in pairs])
    axes.invert_yaxis()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("validation samples (true → predicted)")
    axes.set_title(f"the {len(pairs)} most frequent confusions")
    return figure


def _to_uint8(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Normalised float images back to uint8 pixels."""
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)
