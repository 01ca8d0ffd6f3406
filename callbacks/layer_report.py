"""The layer report: Lightning's model summary of every layer, written to the run directory (Lightning only logs it)."""

from pathlib import Path

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.model_summary import summarize


def classifier_layer_report(module: LightningModule) -> str:
    """Each layer's type, parameters, FLOPs, input and output sizes for the module's example input, then the totals."""
    return f"{summarize(module, max_depth=-1)}\n"


class LayerReport(Callback):
    def __init__(self, dirpath: str, filename: str = "layers.txt"):
        self.path = Path(dirpath) / filename

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(classifier_layer_report(pl_module))
