"""Checkpoint files are whole at every moment: SIGKILL during a write leaves the previous complete file."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from checkpoints.loading import AtomicCheckpointIO
from runs.build import build_trainer
from tests.helpers.commands import REPO
from tests.helpers.compose import compose_config
from user_errors import UserError

# Saves ever newer versions of a 16 MB checkpoint to the same path, as fast as it can: most of its time is
# spent inside a write, so a kill at a random moment usually lands in one.
WRITER = """
import sys, torch
from checkpoints.loading import AtomicCheckpointIO
for version in range(1, 10**9):
    AtomicCheckpointIO().save_checkpoint({"version": version, "weights": torch.full((4_000_000,), float(version))}, sys.argv[1])
"""


def temporary_files_of(path: Path) -> list[Path]:
    """What a write of `path` that was killed leaves (user_errors.replace_whole's temporary file)."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def test_sigkill_during_writes_always_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    rng = random.Random(0)
    newest = 0
    for _ in range(8):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO)
        deadline = time.monotonic() + 120
        while not path.exists():
            assert writer.poll() is None and time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        checkpoint = torch.load(path, weights_only=True)  # raises on a torn file
        assert torch.equal(checkpoint["weights"], torch.full((4_000_000,), float(checkpoint["version"])))
        newest = max(newest, checkpoint["version"])
        assert len(temporary_files_of(path)) <= 1  # at most the write that was killed
    assert newest > 1
    AtomicCheckpointIO().save_checkpoint({"version": 0}, path)  # the next save removes what a killed one left
    assert temporary_files_of(path) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"version": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot be saved")

    with pytest.raises(UserError, match="Could not write the checkpoint"):
        AtomicCheckpointIO().save_checkpoint({"version": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"version": 1}
    assert temporary_files_of(path) == []


def test_the_trainer_writes_checkpoints_atomically(tmp_path):
    cfg = compose_config(["trainer=cpu"], tmp_path)
    trainer = build_trainer(cfg, callbacks=[], loggers=[])
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_remote_paths_keep_lightnings_writer(tmp_path, monkeypatch):
    """A URL (s3://, gs://...) cannot be renamed into place: it goes through Lightning's fsspec writer."""
    written = []
    monkeypatch.setattr(
        "lightning.pytorch.plugins.io.TorchCheckpointIO.save_checkpoint",
        lambda self, checkpoint, path, storage_options=None: written.append(path),
    )
    AtomicCheckpointIO().save_checkpoint({"version": 1}, "memory://bucket/last.ckpt")
    assert written == ["memory://bucket/last.ckpt"]
    AtomicCheckpointIO().save_checkpoint({"version": 1}, Path(tmp_path, "last.ckpt"))
    assert written == ["memory://bucket/last.ckpt"] and (tmp_path / "last.ckpt").is_file()
