"""What the network answered for each sample of an evaluated split: prediction files, and validation figures in TensorBoard."""

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.utilities.distributed import gather_all_tensors
from torchvision.utils import make_grid

from analysis.prediction_files import markdown_rows, write_predictions
from user_errors import writing

log = logging.getLogger(__name__)


def _every_n_epochs(trainer: Trainer, every_n_epochs: int) -> bool:
    """Not the sanity check; in training, epochs n-1, 2n-1, ... (as the periodic checkpoints); 0: none."""
    if trainer.sanity_checking or trainer.fast_dev_run:
        return False
    fitting = trainer.state.fn == TrainerFn.FITTING
    return not fitting or (every_n_epochs > 0 and (trainer.current_epoch + 1) % every_n_epochs == 0)


class PerSamplePredictions(Callback):
    """<dirpath>/<split>-epochNNN.csv of the steps' {"logits", "loss"}: BasePredictionWriter covers predict only, without
    labels or losses. One gather per epoch; DistributedSampler's padding duplicates dropped by sample index."""

    def __init__(self, dirpath: str, every_n_epochs: int = 1, top_k: int = 5):
        self.dirpath = Path(dirpath)
        self.every_n_epochs, self.top_k = every_n_epochs, top_k
        # the experiment whose data the rows index, set by runs/build.py (the sidecar records it for compare.py)
        self.experiment: dict[str, Any] = {"choices": {}, "overrides": []}
        self._checkpoint, self._checkpoint_epoch = "", None  # where the evaluated weights come from

    def weights_from(self, checkpoint: str, epoch: int) -> None:
        """Names the checkpoint of weights loaded outside Lightning (eval.py)."""
        self._checkpoint, self._checkpoint_epoch = str(checkpoint), epoch

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self.weights_from(trainer.ckpt_path or "", checkpoint["epoch"])

    def _start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._collected = [] if _every_n_epochs(trainer, self.every_n_epochs) else None  # the batches' columns

    def _collect(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: int) -> None:
        if self._collected is None:
            return
        logits = outputs["logits"].detach().float()
        top_probs, top_ids = logits.softmax(dim=1).topk(min(self.top_k, logits.shape[1]), dim=1)
        columns = {"index": batch["index"], "top_ids": top_ids, "top_probs": top_probs, "label": batch.get("label")}
        columns["loss"] = outputs["loss"].detach().float() if "loss" in outputs else None  # none in predict
        self._collected.append({name: values for name, values in columns.items() if values is not None})

    def _finish(self, trainer: Trainer, pl_module: LightningModule) -> None:
        collected, self._collected = self._collected, None
        if not collected:
            return
        stage = "val" if trainer.validating else "test" if trainer.testing else "predict"
        split = trainer.datamodule.predict_split if stage == "predict" else stage
        columns = {name: torch.cat([batch[name] for batch in collected]) for name in collected[0]}
        if trainer.world_size > 1:  # every process takes part: one gather per column
            columns = {name: torch.cat(gather_all_tensors(values)) for name, values in columns.items()}
        if not trainer.is_global_zero:
            return
        _, first = np.unique(columns["index"].cpu().numpy(), return_index=True)  # by index, each sample once
        columns = {name: values.cpu().numpy()[first] for name, values in columns.items()}
        fitting = trainer.state.fn == TrainerFn.FITTING
        epoch, checkpoint = (trainer.current_epoch, "") if fitting else (self._checkpoint_epoch, self._checkpoint)
        name = split if stage == split else f"{stage}-{split}"
        path = self.dirpath / (f"{name}.csv" if epoch is None else f"{name}-epoch{epoch:03d}.csv")
        sources = [trainer.datamodule.source(split, index) for index in columns["index"].tolist()]
        meta = dict(split=split, stage=stage, epoch=epoch, checkpoint=checkpoint, experiment=self.experiment)
        meta.update(sources=sources, class_names=trainer.datamodule.class_names)
        with writing(f"the prediction file {path}"):  # label and loss None where not known
            write_predictions(path, **{"label": None, "loss": None, **columns}, **meta)
        log.info(f"Wrote the predictions for {len(first)} {split} samples to {path}")

    on_validation_epoch_start = on_test_epoch_start = on_predict_epoch_start = _start
    on_validation_batch_end = on_test_batch_end = on_predict_batch_end = _collect
    on_validation_epoch_end = on_test_epoch_end = on_predict_epoch_end = _finish


class ValidationFigures(Callback):
    """TensorBoard per validation epoch: the confusion matrix (or its most frequent confusions) and misclassified images
    with their labels; per batch fixed shapes on the device, so no step waits for it."""

    def __init__(
        self, every_n_epochs: int = 1, num_images: int = 16, max_matrix_classes: int = 20, num_pairs: int = 20
    ):
        self.every_n_epochs, self.num_images = every_n_epochs, num_images
        self.max_matrix_classes, self.num_pairs = max_matrix_classes, num_pairs

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        tensorboard = [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        fitting = trainer.state.fn == TrainerFn.FITTING
        self._active = bool(tensorboard) and fitting and _every_n_epochs(trainer, self.every_n_epochs)
        if self._active:  # no label check: it would wait for the device
            self._writer = tensorboard[0]
            confusion = MulticlassConfusionMatrix(trainer.datamodule.num_classes, validate_args=False)
            self.confusion = confusion.to(pl_module.device)
            self._kept: dict[str, torch.Tensor] = {}

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: int
    ) -> None:
        if not self._active:
            return
        logits, labels = outputs["logits"].detach(), batch["label"]
        self.confusion.update(logits, labels)
        new = {"image": batch["image"], "index": batch["index"], "label": labels, "predicted": logits.argmax(dim=1)}
        new["wrong"] = new["predicted"] != labels
        candidates = {name: torch.cat([self._kept.get(name, values[:0]), values]) for name, values in new.items()}
        # misclassified first, each group in order of arrival; a fixed number kept
        order = torch.argsort(candidates["wrong"].to(torch.uint8), descending=True, stable=True)[: self.num_images]
        self._kept = {name: values[order] for name, values in candidates.items()}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active:
            return
        matrix = self.confusion.compute().cpu()  # every process takes part in the sync
        if not trainer.is_global_zero:
            return
        names, step = trainer.datamodule.class_names, trainer.global_step
        if len(names) <= self.max_matrix_classes:
            figure = confusion_matrix_figure(self.confusion, matrix, names)
            self._writer.add_figure("val/confusion_matrix", figure, step)
        else:
            self._writer.add_text("val/most_confused", most_confused_table(matrix, names, self.num_pairs), step)
        if self._kept and self._kept["wrong"].any():
            wrong = {name: values[self._kept["wrong"]].cpu() for name, values in self._kept.items()}
            mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (trainer.datamodule.mean, trainer.datamodule.std))
            images = (wrong["image"].float() * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)
            self._writer.add_image("val/misclassified", make_grid(images, nrow=4, pad_value=255), step)
            rows = zip(range(1, self.num_images + 1), *(wrong[key].tolist() for key in ("index", "label", "predicted")))
            rows = [(place, index, names[label], names[predicted]) for place, index, label, predicted in rows]
            table = "\n".join(markdown_rows(("image, row by row", "sample", "true", "predicted"), rows))
            self._writer.add_text("val/misclassified_labels", table, step)


def confusion_matrix_figure(metric: MulticlassConfusionMatrix, matrix: torch.Tensor, names: list[str]) -> Figure:
    size = 3 + 0.6 * len(names)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    _, axes = metric.plot(matrix, ax=figure.add_subplot(), labels=list(names), cmap="Blues")
    axes.set_title(f"validation confusion matrix ({int(matrix.sum())} samples)")
    return figure


def most_confused_table(matrix: torch.Tensor, names: list[str], num_pairs: int) -> str:
    counts, positions = matrix.clone().fill_diagonal_(0).flatten().sort(descending=True, stable=True)
    pairs = zip(counts[:num_pairs].tolist(), positions[:num_pairs].tolist())
    rows = [(names[position // len(names)], names[position % len(names)], count) for count, position in pairs if count]
    return "\n".join(markdown_rows(("true", "predicted", "validation samples"), rows))
