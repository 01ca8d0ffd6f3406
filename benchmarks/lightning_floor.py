"""Lightning's own cost: the plain loop of benchmarks/overhead.py run by Lightning's Trainer, and nothing else.

A LightningModule whose training and validation steps are the plain loop's (the same network, loss, optimizer,
schedule and on-device epoch sums, printed in the same line at every validation), fed the same batches through
a plain DataLoader, in a Trainer with no logger, callbacks, checkpoints, progress bar or model summary, and
nothing logged. What it costs over the plain loop is Lightning's loop itself (fetching, hooks, the closure
around the optimizer step, the bookkeeping between steps), which no LightningModule, DataModule or callback
of ours can take away; bare and train.py are measured against it too.
"""

from pathlib import Path

import lightning as L
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from benchmarks.overhead import BATCH_SIZE, VAL_BATCH_SIZE, epoch_report, evaluation_sums, sgd_with_cosine_schedule, top1_top5_hits
from benchmarks.probe import Probe
from datamodules.array_dataset import already_collated
from datamodules.mnist import MNISTDataModule
from datamodules.resumable_loader import Batches, EpochShuffleSampler
from lightning_modules.nets.lenet import LeNet5


class PlainLoopModule(L.LightningModule):
    def __init__(self, datamodule: MNISTDataModule, steps: int, max_epochs: int):
        super().__init__()
        self.datamodule, self.steps, self.max_epochs = datamodule, steps, max_epochs
        self.net = LeNet5(MNISTDataModule.input_shape, MNISTDataModule.num_classes)

    def on_train_epoch_start(self) -> None:
        self.train_sums = [torch.zeros((), device=self.device), torch.zeros(2, device=self.device, dtype=torch.long)]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.net(self.datamodule.normalize(batch["image"]))
        loss = F.cross_entropy(logits, batch["label"])
        self.train_sums[0] += loss.detach() * len(logits)
        self.train_sums[1] += top1_top5_hits(logits.detach(), batch["label"])
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_sums = [torch.zeros((), device=self.device), torch.zeros(2, device=self.device, dtype=torch.long)]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        for total, batch_sum in zip(self.val_sums, evaluation_sums(self.net, self.datamodule, batch)):
            total += batch_sum

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            train_size, val_size = len(self.datamodule.train_set), len(self.datamodule.val_set)
            print(epoch_report(self.current_epoch, (*self.train_sums, train_size), (*self.val_sums, val_size)), flush=True)

    def configure_optimizers(self) -> dict:
        optimizer, scheduler = sgd_with_cosine_schedule(self.net, self.steps, self.max_epochs, len(self.datamodule.train_set))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def lightning_loop(data_dir: str, steps: int, first_step: int, seed: int, max_epochs: int, marks_path: Path) -> None:
    """The plain loop's work by Lightning's Trainer, in this process; writes benchmarks/probe.py's marks."""
    L.seed_everything(seed)  # as the plain loop: the datamodule draws its shuffle seed, then the network its weights
    datamodule = MNISTDataModule(data_dir, download=False, batch_size=BATCH_SIZE)
    module = PlainLoopModule(datamodule, steps, max_epochs)
    datamodule.setup("fit")
    sampler = EpochShuffleSampler(len(datamodule.train_set), datamodule.shuffle_seed, BATCH_SIZE)
    train_loader = DataLoader(Batches(datamodule.train_set), sampler=sampler, batch_size=None, collate_fn=already_collated)
    val_loader = DataLoader(datamodule.val_set, batch_size=VAL_BATCH_SIZE, collate_fn=already_collated)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, max_epochs=max_epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[Probe(str(marks_path), first_step)],
    )
    trainer.fit(module, train_loader, val_loader)
