"""Writes the network's layer report (lightning_modules/layer_report.py, as summarize.py prints it) into the run directory
when training starts."""

import logging
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

from lightning_modules.layer_report import classifier_layer_report

log = logging.getLogger(__name__)


class LayerReport(Callback):
    def __init__(self, dirpath: str, filename: str = "layers.txt"):
        self.path = Path(dirpath) / filename

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(classifier_layer_report(pl_module))
        log.info(f"Layer report: {self.path}")
