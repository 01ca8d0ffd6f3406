"""Tiny training runs of train.py shared by the report, export and prediction tests (each trained once per session)."""

from pathlib import Path

from tests.helpers.commands import TINY, run_entry

_trained: dict[tuple[str, ...], Path] = {}


def tiny_run(tmp_path_factory, mnist_dir: Path, *overrides: str) -> Path:
    """The run directory of `train.py` with the TINY settings and `overrides`, trained on first use."""
    key = tuple(overrides)
    if key not in _trained:
        out = tmp_path_factory.mktemp("tiny_run")
        run_entry("train.py", *TINY, f"data.data_dir={mnist_dir}", f"hydra.run.dir={out}", *overrides)
        _trained[key] = out
    return _trained[key]
