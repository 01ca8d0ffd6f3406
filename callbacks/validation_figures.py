"""TensorBoard images of each validation epoch of training: misclassified samples and the confusion matrix.

Cost: per batch, a confusion-matrix update and a merge that keeps a fixed number of samples,
misclassified ones first, all on the device with fixed shapes (no host synchronisation); per epoch,
one confusion-matrix sync across DDP processes, after which process 0 draws the figures with matplotlib
and adds them to TensorBoard at the step of their epoch. The misclassified samples shown are the first
ones of process 0's share of the validation set.
"""

import io
from typing import Any

import PIL.Image
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from tensorboard.compat.proto.summary_pb2 import Summary
from torchmetrics.classification import MulticlassConfusionMatrix

from analysis.figures import short_name, validation_figures


class ValidationFigures(Callback):
    """Needs the LightningModule's validation_step to return {"logits": (B, K), ...}.

    Args:
        every_n_epochs: draw the figures of every n-th epoch, 0 for none (each takes matplotlib a few tenths of a second).
        num_images: misclassified samples in the grid (tag `val/misclassified`).
        max_matrix_classes: up to this many classes the full confusion matrix is drawn with its counts
            (tag `val/confusion_matrix`); above it, a chart of the `num_pairs` most frequent
            (true, predicted) confusions (tag `val/most_confused`).
    """

    def __init__(
        self, every_n_epochs: int = 1, num_images: int = 16, max_matrix_classes: int = 20, num_pairs: int = 20
    ):
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
            self.confusion = MulticlassConfusionMatrix(
                trainer.datamodule.num_classes, validate_args=False
            )  # no label check: it would wait for the device

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

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active:
            return
        logits = outputs["logits"].detach()
        self.confusion.update(logits, batch["label"])
        predicted = logits.argmax(dim=1)
        candidates = {
            "image": batch["image"],
            "index": batch["index"],
            "label": batch["label"],
            "predicted": predicted,
            "wrong": predicted != batch["label"],
        }
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
        images, captions = torch.zeros(0, dtype=torch.uint8), []
        if self._kept is not None:  # None: no validation batch
            misclassified = {name: values[self._kept["wrong"]].cpu() for name, values in self._kept.items()}
            images = _to_uint8(misclassified["image"], trainer.datamodule.mean, trainer.datamodule.std)
            captions = [
                f"#{index}\ntrue: {short_name(names[label])}\npredicted: {short_name(names[predicted])}"
                for index, label, predicted in zip(
                    misclassified["index"].tolist(),
                    misclassified["label"].tolist(),
                    misclassified["predicted"].tolist(),
                )
            ]
        pngs = validation_figures(
            matrix.cpu().numpy(), names, self.max_matrix_classes, self.num_pairs, images.numpy(), captions
        )
        self._add_images(pngs, trainer.global_step)

    def _add_images(self, pngs: dict[str, bytes], step: int) -> None:
        """PNG files into TensorBoard as they are, as add_figure would have written them."""
        for tag, png in pngs.items():
            self._writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=_image(png))]), step)


def _image(png: bytes) -> Summary.Image:
    width, height = PIL.Image.open(io.BytesIO(png)).size  # reads the header only
    return Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)


def _to_uint8(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Normalised float images back to uint8 pixels."""
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)
