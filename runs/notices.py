"""Library notices a user can do nothing about, kept out of the run's output; real warnings stay visible."""

import logging
import warnings


class DropAdverts(logging.Filter):
    """Lightning's "💡 Tip: ... try installing [litlogger|litmodels]" lines: adverts, not about this run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_library_notices() -> None:
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(DropAdverts())
    logging.getLogger("onnxscript").setLevel(logging.WARNING)  # the ONNX exporter's progress lines
    # TensorBoard's graph writer has no other way than torch.jit.trace, which torch deprecates
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning)
    # inside Lightning's own pytree helper, with this torch release
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
