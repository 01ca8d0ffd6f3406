"""The network's layer report, printed by summarize.py and written into the run directory when training starts.

The layer report of a network (the classic "list every layer's name and output size"): every module in the
order it first runs, its output shape for one input, its parameters and multiply-accumulates, then totals.

The forward pass runs on the meta device (shapes only, no arithmetic), so the report of VGG-16 costs as
little as LeNet's. Multiply-accumulates are torch's FlopCounterMode count (convolutions, linear layers,
matrix products, recurrent layers) halved; elementwise work (activations, BatchNorm, pooling) is not counted.
"""

import logging
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_modules.nets.layers import meta_forward

COLUMNS = ("layer", "type", "output shape", "params", "MACs")


def layer_report(net: nn.Module, input_shape: tuple[int, ...], title: str) -> str:
    names = {module: name for name, module in net.named_modules() if name}
    first_calls: dict[str, None] = {}  # ordered, each name once
    outputs: dict[str, str] = {}

    def note_call(module: nn.Module, args: Any) -> None:
        first_calls.setdefault(names[module])

    def note_output(module: nn.Module, args: Any, output: Any) -> None:
        outputs.setdefault(names[module], _shape(output))

    handles = [
        hook
        for module in names
        for hook in (module.register_forward_pre_hook(note_call), module.register_forward_hook(note_output))
    ]
    try:
        with FlopCounterMode(display=False) as counter:
            output = meta_forward(net, input_shape)
    finally:
        for handle in handles:
            handle.remove()
    flops = counter.get_flop_counts()  # keyed by the module's path below the root's class name

    never_called = [name for name in names.values() if name not in first_calls]
    rows = [("input", "", str([1, *input_shape]), "", "")]
    for name in [*first_calls, *never_called]:
        module = net.get_submodule(name)
        macs = sum(flops.get(f"{type(net).__name__}.{name}", {}).values()) // 2
        indent = "  " * name.count(".")
        rows.append(
            (
                indent + name,
                type(module).__name__,
                outputs.get(name, "not called"),
                f"{_count(module.parameters()):,}",
                f"{macs:,}",
            )
        )

    total = _count(net.parameters())
    trainable = _count(parameter for parameter in net.parameters() if parameter.requires_grad)
    total_macs = counter.get_total_flops() // 2
    widths = [max(len(row[column]) for row in [COLUMNS, *rows]) for column in range(len(COLUMNS))]
    lines = [title, ""]
    for row in [COLUMNS, *rows]:
        cells = [
            cell.ljust(width) if column < 3 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    lines[3:3] = ["-" * len(lines[2])]
    lines += [
        "",
        f"output: {_shape(output)}",
        f"parameters: {total:,} ({trainable:,} trainable, {total - trainable:,} frozen)",
        f"multiply-accumulates per input: {total_macs:,} ({total_macs / 1e6:,.1f} M)",
    ]
    return "\n".join(lines) + "\n"


def classifier_layer_report(module: LightningModule) -> str:
    """The report of an ImageClassifier's network, titled with its config, for one input of the dataset's shape."""
    net, input_shape = module.hparams.net, tuple(module.hparams.input_shape)
    options = ", ".join(f"{key}={value}" for key, value in net.items() if key != "_target_")
    title = f"{net['_target_']}({options}) for one {'x'.join(map(str, input_shape))} input, {module.hparams.num_classes} classes"
    return layer_report(module.net, input_shape, title)


def _count(parameters) -> int:
    return sum(parameter.numel() for parameter in parameters)


def _shape(output: Any) -> str:
    if isinstance(output, torch.Tensor):
        return str(list(output.shape))
    if isinstance(output, (tuple, list)):
        return "(" + ", ".join(_shape(item) for item in output) + ")"
    return type(output).__name__


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
