"""Writes a per-sample prediction file for each evaluated split: validation epochs, test, predict.

Files go to `<dirpath>/<split>-epochNNN.csv` (predict: `predict-<split>-epochNNN.csv`) with a JSON
sidecar; the format is described in analysis/prediction_files.py. Under DDP every process keeps its own
samples on its device until the end of the epoch; then one gather collects them, duplicates that
DistributedSampler adds to even out the processes are dropped by sample index, and process 0 writes
exactly one row per sample.
"""

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from torchmetrics.utilities.distributed import gather_all_tensors

from analysis.prediction_files import write_predictions
from user_errors import writing

log = logging.getLogger(__name__)


class PerSamplePredictions(Callback):
    """Needs the LightningModule's evaluation steps to return {"logits": (B, K), "loss": (B,)}; predict_step {"logits": (B, K)}.

    Args:
        dirpath: folder of the files (the run directory's predictions/).
        every_n_epochs: during training, write the validation predictions of every n-th epoch
            (epochs n-1, 2n-1, ..., as the periodic checkpoints); 0 for none. Test and predict are always written.
        top_k: predictions kept per sample (at most the number of classes).
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 1, top_k: int = 5):
        self.dirpath = Path(dirpath)
        # the experiment whose data the rows index, set by runs/build.py (the sidecar records it for compare.py)
        self.experiment: dict[str, Any] = {"choices": {}, "overrides": []}
        self.every_n_epochs = every_n_epochs
        self.top_k = top_k
        self._collected: list[dict[str, torch.Tensor]] | None = None
        # the checkpoint the evaluated weights were loaded from, and its epoch
        self._checkpoint, self._checkpoint_epoch = "", None

    def weights_from(self, checkpoint: str, epoch: int) -> None:
        """Says which checkpoint the module's weights come from, for weights loaded outside Lightning (eval.py)."""
        self._checkpoint, self._checkpoint_epoch = str(checkpoint), epoch

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self.weights_from(trainer.ckpt_path or "", checkpoint["epoch"])

    # -- collecting, without moving anything off the device before the epoch ends

    def _start(self, trainer: Trainer) -> None:
        self._collected = (
            None if trainer.sanity_checking or trainer.fast_dev_run or not self._epoch_selected(trainer) else []
        )

    def _epoch_selected(self, trainer: Trainer) -> bool:
        if trainer.state.fn != TrainerFn.FITTING:
            return True
        return self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def _collect(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        if self._collected is None:
            return
        logits = outputs["logits"].detach().float()
        top_probs, top_ids = logits.softmax(dim=1).topk(min(self.top_k, logits.shape[1]), dim=1)
        columns = {"index": batch["index"], "top_ids": top_ids, "top_probs": top_probs}
        if "label" in batch:
            columns["label"] = batch["label"]
        if "loss" in outputs:
            columns["loss"] = outputs["loss"].detach().float()
        self._collected.append(columns)

    def _finish(self, trainer: Trainer, split: str, stage: str) -> None:
        if not self._collected:
            return
        columns = {name: torch.cat([batch[name] for batch in self._collected]) for name in self._collected[0]}
        self._collected = None
        if trainer.world_size > 1:  # every process calls this: one gather per column, once per epoch
            columns = {name: torch.cat(gather_all_tensors(values)) for name, values in columns.items()}
        if not trainer.is_global_zero:
            return
        columns = {name: values.cpu().numpy() for name, values in columns.items()}
        _, first = np.unique(columns["index"], return_index=True)  # sorted by index, each sample once
        columns = {name: values[first] for name, values in columns.items()}
        epoch, checkpoint = (
            (trainer.current_epoch, "")
            if trainer.state.fn == TrainerFn.FITTING
            else (self._checkpoint_epoch, self._checkpoint)
        )
        name = split if stage == split else f"{stage}-{split}"
        path = self.dirpath / (f"{name}.csv" if epoch is None else f"{name}-epoch{epoch:03d}.csv")
        datamodule = trainer.datamodule
        with writing(f"the prediction file {path}"):
            write_predictions(
                path,
                split=split,
                stage=stage,
                index=columns["index"],
                label=columns.get("label"),
                loss=columns.get("loss"),
                top_ids=columns["top_ids"],
                top_probs=columns["top_probs"],
                class_names=datamodule.class_names,
                sources=[datamodule.source(split, index) for index in columns["index"].tolist()],
                epoch=epoch,
                checkpoint=checkpoint,
                experiment=self.experiment,
            )
        log.info(f"Wrote the predictions for {len(first)} {split} samples to {path}")

    # -- Lightning hooks

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(outputs, batch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, "val", "val")

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(outputs, batch)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, "test", "test")

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer)

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(outputs, batch)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, trainer.datamodule.predict_split, "predict")
