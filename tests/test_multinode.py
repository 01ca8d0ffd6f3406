"""Two "nodes" on loopback: two torchrun agents of one CPU process each (gloo), started as docs/scale.md shows, write
one run directory named after the rendezvous id, only rank 0 writes the run's files, and the result equals the same
training as 2 processes on one node (trainer=ddp_cpu)."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.commands import REPO, run_entry
from tests.helpers.csv_rows import read_rows
from tests.helpers.tensorboard_events import read_scalars

# docs/scale.md, verbatim apart from the port (a free one here) and SHORT
TWO_NODES = (
    "torchrun --nnodes=2 --nproc-per-node=1 --node-rank={node_rank} --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:29500 --rdzv-id=mnist-2nodes "
    "train.py trainer.num_nodes=2 trainer.devices=1 trainer.accelerator=cpu trainer.strategy=ddp"
)
ONE_NODE = "python train.py trainer=ddp_cpu trainer.devices=2"
# the shortening overrides (listed in docs/scale.md): a tiny MLP run of 2 epochs, no test
SHORT = [
    "model=mlp",
    "trainer.max_epochs=2",
    "data.batch_size=16",
    "data.eval_batch_size=25",
    "data.val_size=100",
    "data.download=false",
    "test=false",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.log_every_n_steps=5",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun() -> str:
    """The torchrun of this Python's environment (the console script of `python -m torch.distributed.run`)."""
    return (
        str(Path(sys.executable).parent / "torchrun")
        if (Path(sys.executable).parent / "torchrun").exists()
        else shutil.which("torchrun")
    )


# measured 217 s on the 2 shared cores under a load of 8: four Python processes start torch and Lightning
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(mnist_dir, tmp_path_factory):
    two_logs, one_logs = tmp_path_factory.mktemp("two_node_logs"), tmp_path_factory.mktemp("one_node_logs")
    port = free_port()
    extra = [*SHORT, f"data.data_dir={mnist_dir}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    nodes = []
    for node_rank in (0, 1):
        command = TWO_NODES.format(node_rank=node_rank).replace("127.0.0.1:29500", f"127.0.0.1:{port}").split()
        command[0] = torchrun()
        nodes.append(
            subprocess.Popen(
                [*command, *extra, f"paths.log_dir={two_logs}"],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-5000:]
    run_entry(*ONE_NODE.split()[1:], *extra, f"paths.log_dir={one_logs}")
    (one,) = (one_logs / "train" / "runs").iterdir()
    return two_logs / "train" / "runs", one, outputs


def test_every_process_of_both_nodes_writes_into_the_run_directory_named_by_the_rendezvous_id(runs):
    two_runs, _, _ = runs
    assert [path.name for path in two_runs.iterdir()] == ["torchrun-mnist-2nodes"]
    run = two_runs / "torchrun-mnist-2nodes"
    assert (
        (run / "checkpoints" / "last.ckpt").is_file()
        and (run / "timing.csv").is_file()
        and (run / ".hydra" / "config.yaml").is_file()
    )
    # rank 0's log is train.log; rank 1 logs to its own file, not into rank 0's
    rank0, rank1 = (run / "train.log").read_text(), (run / "train.rank1.log").read_text()
    batch = "Batch: 16 per process x 2 processes (1 per node x 2 nodes) = 32 samples per optimizer step"
    assert batch in rank0 and batch in rank1 and "Best checkpoint" in rank0
    assert "Learning rate: optimizer.lr=0.05 as given, not scaled with the 2 processes" in rank0
    assert sorted(path.name for path in run.glob("*.log")) == ["train.log", "train.rank1.log"]


def test_two_nodes_train_the_same_weights_and_metrics_as_two_processes_on_one_node(runs):
    two_runs, one, _ = runs
    two = two_runs / "torchrun-mnist-2nodes"
    two_scalars, one_scalars = read_scalars(two / "tensorboard"), read_scalars(one / "tensorboard")
    for tag in ("train/loss", "val/loss", "val/top1", "val/top5"):
        assert [step for step, _ in two_scalars[tag]] == [step for step, _ in one_scalars[tag]] and len(
            two_scalars[tag]
        ) == 2
        assert [value for _, value in two_scalars[tag]] == pytest.approx(
            [value for _, value in one_scalars[tag]], rel=1e-6
        )
    assert one_scalars["val/loss"][-1][1] < one_scalars["val/loss"][0][1]  # it did train
    weights = [torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for run in (two, one)]
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-6, atol=1e-7)
    for epoch in (0, 1):  # every validation image once, predicted alike
        rows = [read_rows(run / "predictions" / f"val-epoch{epoch:03d}.csv") for run in (two, one)]
        assert [(row["index"], row["pred1"]) for row in rows[0]] == [
            (row["index"], row["pred1"]) for row in rows[1]
        ] and len(rows[0]) == 100


def test_docs_show_the_commands_this_test_runs():
    page = (REPO / "docs" / "scale.md").read_text()
    for node_rank in (0, 1):
        assert TWO_NODES.format(node_rank=node_rank) in page.replace("\\\n  ", "")
    assert ONE_NODE in page and " ".join(SHORT) in page
