"""The one LightningModule for image classification: any network, cross-entropy, top-1/top-5, optimizer and schedule from config."""

from typing import Any

import torch
from hydra.utils import instantiate
from lightning import LightningModule
from torch import nn
from torch.nn import functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from user_errors import UserError

# schedulers that cycle the momentum with the learning rate, which an optimizer without momentum lacks
CYCLING_MOMENTUM = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)


class ImageClassifier(LightningModule):
    """Trains `net` on batches {"image", "label"}; rebuild a checkpoint with runs.build, never load_from_checkpoint."""

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
        super().__init__()
        if not isinstance(compile, (bool, dict)):  # the config check cannot type a bool-or-dict setting
            raise UserError(
                f"module.compile={compile!r} is neither true, false nor a dict of torch.compile's arguments (e.g. {{mode: max-autotune}}): give one of those."
            )
        self.save_hyperparameters(logger=False)
        self.net = instantiate(net, input_shape=tuple(input_shape), num_classes=num_classes)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.example_input_array = torch.zeros(2, *input_shape)
        self._channels_last, self._compiled = bool(channels_last), False  # channels_last None: decided in setup
        self.train_metrics, self.val_metrics, self.test_metrics = (
            epoch_metrics(num_classes, s) for s in ("train", "val", "test")
        )

    @property
    def lr(self) -> float:
        """optimizer.lr in the hyperparameters (checkpoints keep it), which Lightning's learning-rate finder sets."""
        return self.hparams.optimizer["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        previous, self.hparams.optimizer["lr"] = self.hparams.optimizer["lr"], value
        scheduler = (self.hparams.scheduler or {}).get("scheduler") or {}
        if scheduler.get("max_lr") == previous:  # OneCycle's peak follows optimizer.lr (conf/scheduler/onecycle.yaml)
            scheduler["max_lr"] = value

    def reset_metrics(self) -> None:
        """Empties the epoch metrics: the finders' steps must not count."""
        for metrics in (self.train_metrics, self.val_metrics, self.test_metrics):
            metrics.reset()

    def setup(self, stage: str) -> None:
        # the device is known here; no Lightning option sets channels-last; Module.compile keeps parameter names
        if self.hparams.channels_last is None:
            self._channels_last = self.trainer.strategy.root_device.type == "cuda"
        if self._channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.hparams.compile and not self._compiled:  # setup runs for each stage (fit, then test)
            self.net.compile(**(self.hparams.compile if isinstance(self.hparams.compile, dict) else {}))
            self._compiled = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # the TensorBoard graph: TorchScript cannot trace a compiled module, its plain forward it can
        return self.net.forward(images) if torch.jit.is_tracing() else self.net(images)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits, labels = self(batch["image"]), batch["label"]
        loss = self.loss_fn(logits, labels)
        # the batch's mean loss once per sample: the epoch's loss is a mean over samples, as in evaluation
        self.train_metrics.update(preds=logits.detach(), target=labels, value=loss.detach().expand(len(labels)))
        step_top1 = (logits.detach().argmax(dim=1) == labels).float().mean()
        self.log_dict({"train_step/loss": loss.detach(), "train_step/top1": step_top1}, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Each sample's logits and loss, for the callbacks (prediction files, figures); the test step too."""
        logits, labels = self(batch["image"]), batch["label"]
        losses = F.cross_entropy(logits, labels, reduction="none", label_smoothing=self.loss_fn.label_smoothing)
        metrics = self.test_metrics if self.trainer.testing else self.val_metrics
        metrics.update(preds=logits, target=labels, value=losses)
        return {"logits": logits, "loss": losses}

    test_step = validation_step

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return {"logits": self(batch["image"])}

    def on_train_epoch_end(self) -> None:
        # to the loggers now, before the epoch's checkpoints (Lightning logs after them): a resume finds them on disk
        values = self._log_epoch(self.train_metrics, logger=False)
        for logger in self.loggers:  # at the epoch's last step, as Lightning logs epoch values
            logger.log_metrics({**values, "epoch": self.current_epoch}, step=self.global_step - 1)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics if self.trainer.testing else self.val_metrics, prog_bar=True)

    on_test_epoch_end = on_validation_epoch_end

    def _log_epoch(self, metrics: MetricCollection, prog_bar: bool = False, logger: bool = True) -> dict[str, Any]:
        # computed once per epoch across DDP processes; sync_dist only silences Lightning's warning
        values = metrics.compute()
        metrics.reset()
        self.log_dict(values, on_step=False, on_epoch=True, prog_bar=prog_bar, logger=logger, sync_dist=True)
        return values

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a run continued with another length (ckpt_path= trainer.max_epochs=20) keeps its step count on a schedule
        # made for its own length: the stored one would end early (OneCycleLR derives its phases from total_steps)
        run_length = (self.hparams.scheduler or {}).get("run_length")
        for state in checkpoint.get("lr_schedulers", []) if run_length else []:
            for key in (run_length, "_schedule_phases"):
                state.pop(key, None)

    def configure_optimizers(self) -> dict[str, Any]:
        # _partial_: Hydra would turn the parameter groups' dicts into DictConfigs, which torch.optim does not take
        params = self.net.parameter_groups() if hasattr(self.net, "parameter_groups") else self.parameters()
        optimizer = instantiate({**self.hparams.optimizer, "lr": self.lr}, _partial_=True)(params)
        config = self.hparams.scheduler
        if not config:
            return optimizer
        factory, interval, filled = instantiate(config["scheduler"]), config.get("interval", "epoch"), {}
        # conf/scheduler/*.yaml names the argument that measures the run (T_max, total_steps), known only now
        run_length = config.get("run_length")
        if run_length and factory.keywords.get(run_length) is None:
            trainer = self.trainer
            filled[run_length] = trainer.estimated_stepping_batches if interval == "step" else trainer.max_epochs
        if "max_lr" in factory.keywords and len(optimizer.param_groups) > 1:  # each group's peak keeps its ratio
            base = optimizer.defaults["lr"]
            filled["max_lr"] = [factory.keywords["max_lr"] * group["lr"] / base for group in optimizer.param_groups]
        momentum = optimizer.defaults.get("momentum", 0) > 0 or "betas" in optimizer.defaults
        if factory.func in CYCLING_MOMENTUM and not momentum:
            filled["cycle_momentum"] = False  # it would add momentum (or fail, for Adagrad)
        scheduler = {"scheduler": factory(optimizer, **filled), "interval": interval, "name": "train/lr"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def epoch_metrics(num_classes: int, stage: str) -> MetricCollection:
    """<stage>/loss (the mean over samples), <stage>/top1 and top5."""
    # validate_args=False and nan_strategy="disable": no update waits for the device (a NaN loss shows);
    # compute_groups=False: torchmetrics would merge top-1 and top-5 into one state if their first counts agreed
    accuracy = lambda k: MulticlassAccuracy(num_classes, top_k=k, average="micro", validate_args=False)  # noqa: E731
    metrics = {"loss": MeanMetric(nan_strategy="disable"), "top1": accuracy(1), "top5": accuracy(min(5, num_classes))}
    return MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)
