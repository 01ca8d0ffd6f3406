"""The one LightningModule for image classification: any network, cross-entropy, top-1/top-5.

The classifier's epoch loss: a weighted mean kept on the device.

torchmetrics' MeanMetric drops NaN values (checking every update, which waits for the device) or, with
nan_strategy="disable", drops the weights (torchmetrics 1.9); a diverged epoch must show as NaN instead.
torchmetrics' Metric still resets it, moves it with the module and sums it across DDP processes when computed.

The one LightningModule for image classification: any network, cross-entropy, top-1/top-5.
"""

from typing import Any

import torch
from hydra.utils import instantiate
from lightning import LightningModule
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from user_errors import UserError


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


# schedulers that cycle the momentum along with the learning rate, which an optimizer without momentum lacks
CYCLING_MOMENTUM = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)


class ImageClassifier(LightningModule):
    """Trains `net` (a config with `_target_`) on batches {"image", "label"}.

    All arguments are plain data, saved as hyperparameters (a record: rebuild a shared checkpoint with
    runs.evaluation.rebuild_from_checkpoint, never `load_from_checkpoint`, which builds what the file names).
    """

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None,
        input_shape: tuple[int, int, int],
        num_classes: int,
        label_smoothing: float = 0.0,
        channels_last: bool | None = None,
        compile: bool | dict[str, Any] = False,
    ):
        """channels_last: keep the network's weights and its input images in channels-last (NHWC) memory
        format, which cuDNN's convolutions prefer (with mixed precision on tensor cores above all); None: on
        a GPU only. compile: torch.compile the network (true, or a dict of torch.compile's keyword arguments):
        the first steps compile it, later ones run the fused code."""
        super().__init__()
        if not isinstance(compile, (bool, dict)):  # the config check cannot type a bool-or-dict setting
            raise UserError(
                f"module.compile={compile!r} is neither true, false nor a dict of torch.compile's arguments (e.g. {{mode: max-autotune}}): give one of those."
            )
        self.save_hyperparameters(logger=False)
        self._channels_last = bool(channels_last)  # None is decided in setup, once the device is known
        self.net = instantiate(net, input_shape=tuple(input_shape), num_classes=num_classes)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.example_input_array = torch.zeros(2, *input_shape)

        self.train_accuracy, self.val_accuracy, self.test_accuracy = (
            top1_top5_accuracy(num_classes, stage) for stage in ("train", "val", "test")
        )
        self.train_loss, self.val_loss, self.test_loss = Mean(), Mean(), Mean()
        self._net_compiled = False

    @property
    def lr(self) -> float:
        """The optimizer's learning rate (optimizer.lr): the attribute Lightning's learning-rate finder reads and sets."""
        return self.hparams.optimizer["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        # stored in the hyperparameters, so that checkpoints (and a resume) keep the learning rate trained with
        previous = self.hparams.optimizer["lr"]
        self.hparams.optimizer["lr"] = value
        scheduler = (self.hparams.scheduler or {}).get("scheduler") or {}
        if scheduler.get("max_lr") == previous:  # OneCycle's peak follows optimizer.lr (conf/scheduler/onecycle.yaml)
            scheduler["max_lr"] = value

    def reset_metrics(self) -> None:
        """Empties the epoch metrics: steps taken outside training proper (the learning-rate finder's) must not count."""
        for metric in (
            self.train_accuracy,
            self.val_accuracy,
            self.test_accuracy,
            self.train_loss,
            self.val_loss,
            self.test_loss,
        ):
            metric.reset()

    def setup(self, stage: str) -> None:
        # the device is known here (the trainer's), before Lightning moves the module there (keeping memory formats)
        if self.hparams.channels_last is None:
            self._channels_last = self.trainer.strategy.root_device.type == "cuda"
        if self._channels_last:
            self.net.to(memory_format=torch.channels_last)
        compile_options = self.hparams.compile
        if compile_options and not self._net_compiled:  # setup runs again for each stage (fit, then test)
            # Module.compile compiles in place: parameter names, and so checkpoints, stay those of the plain network
            self.net.compile(**(compile_options if isinstance(compile_options, dict) else {}))
            self._net_compiled = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        if (
            torch.jit.is_tracing()
        ):  # the TensorBoard graph: TorchScript cannot trace a compiled module, its plain forward it can
            return self.net.forward(images)
        return self.net(images)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        labels = batch["label"]
        loss = self.loss_fn(logits, labels)
        self.train_accuracy.update(logits.detach(), labels)
        self.train_loss.update(loss.detach(), weight=len(logits))
        step_top1 = (logits.detach().argmax(dim=1) == labels).float().mean()
        # Lightning writes them to the loggers every trainer.log_every_n_steps steps
        self.log_dict(
            {"train_step/loss": loss.detach(), "train_step/top1": step_top1},
            on_step=True,
            on_epoch=False,
            prog_bar=True,
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluation_step(batch, self.val_loss, self.val_accuracy)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluation_step(batch, self.test_loss, self.test_accuracy)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return {"logits": self(batch["image"])}

    def _evaluation_step(
        self, batch: dict[str, torch.Tensor], loss_metric: Mean, accuracy: MetricCollection
    ) -> dict[str, torch.Tensor]:
        """Updates the epoch metrics; returns each sample's logits and loss for callbacks (prediction files, figures)."""
        logits = self(batch["image"])
        losses = F.cross_entropy(logits, batch["label"], reduction="none", label_smoothing=self.loss_fn.label_smoothing)
        loss_metric.update(losses)
        accuracy.update(logits, batch["label"])
        return {"logits": logits, "loss": losses}

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train", self.train_loss, self.train_accuracy)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val", self.val_loss, self.val_accuracy)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test", self.test_loss, self.test_accuracy)

    def _log_epoch_metrics(self, stage: str, loss_metric: Mean, accuracy: MetricCollection) -> None:
        # Computed here, once per epoch (compute() sums the counts across DDP processes), and logged as values, the
        # same on every process: sync_dist averages equal values (a small collective per value and epoch) and keeps
        # Lightning from warning that epoch values are not synced.
        values = {f"{stage}/loss": loss_metric.compute(), **accuracy.compute()}
        loss_metric.reset()
        accuracy.reset()
        self.log_dict(values, on_step=False, on_epoch=True, prog_bar=stage == "val", sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        # a network may offer parameter groups (its head with another learning rate, frozen layers left out);
        # _partial_: Hydra would turn the groups' dicts into DictConfigs, which torch.optim does not take
        params = self.net.parameter_groups() if hasattr(self.net, "parameter_groups") else self.parameters()
        optimizer = instantiate({**self.hparams.optimizer, "lr": self.lr}, _partial_=True)(params)
        scheduler_cfg = self.hparams.scheduler
        if not scheduler_cfg:
            return {"optimizer": optimizer}
        scheduler_factory = instantiate(scheduler_cfg["scheduler"])
        interval = scheduler_cfg.get("interval", "epoch")
        filled = {}
        # conf/scheduler/*.yaml names the argument that measures the run (T_max, total_steps); the run's length in
        # optimizer steps is known only now, from the trainer
        run_length = scheduler_cfg.get("run_length")
        if run_length and scheduler_factory.keywords.get(run_length) is None:
            filled[run_length] = (
                self.trainer.estimated_stepping_batches if interval == "step" else self.trainer.max_epochs
            )
        if "max_lr" in scheduler_factory.keywords and len(optimizer.param_groups) > 1:
            # one max_lr would erase the groups' own learning rates: each group's peak keeps its ratio to the base lr
            filled["max_lr"] = [
                scheduler_factory.keywords["max_lr"] * group["lr"] / optimizer.defaults["lr"]
                for group in optimizer.param_groups
            ]
        if scheduler_factory.func in CYCLING_MOMENTUM and not _uses_momentum(optimizer):
            filled["cycle_momentum"] = False  # it would otherwise add momentum (or fail, for Adagrad)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler_factory(optimizer, **filled),
                "interval": interval,
                "name": "train/lr",
            },
        }


def top1_top5_accuracy(num_classes: int, stage: str) -> MetricCollection:
    """<stage>/top1 and <stage>/top5: the fraction of samples whose label is the prediction, or among the five best."""
    top_k = {"top1": 1, "top5": min(5, num_classes)}
    # validate_args=False: its label-range check waits for the device every batch (a bad label fails the loss anyway)
    accuracies = {
        name: MulticlassAccuracy(num_classes, top_k=k, average="micro", validate_args=False)
        for name, k in top_k.items()
    }
    # compute_groups=False: torchmetrics would merge top-1 and top-5 into one state if their first batch's counts agreed
    return MetricCollection(accuracies, prefix=f"{stage}/", compute_groups=False)


def _uses_momentum(optimizer: torch.optim.Optimizer) -> bool:
    return optimizer.defaults.get("momentum", 0) > 0 or "betas" in optimizer.defaults
