"""callbacks/resume.py StopOnSignal: a single process looks at its flag after every batch; DDP processes agree on
stopping (a collective that waits for the devices) only every check_every_n_steps steps, and then stop together.
The signals themselves, through the real train.py, are in tests/test_resume.py."""

import signal
from types import SimpleNamespace

import pytest

from callbacks.resume import StopOnSignal, TrainingStopped
from runs.config_check import check_config
from tests.helpers.compose import compose_config
from user_errors import UserError


class CountingStrategy:
    """Stands for the processes agreeing: any of them signalled (all=False), counting the collectives."""

    def __init__(self):
        self.collectives = 0

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.collectives += 1
        return decision


def trainer(world_size: int) -> SimpleNamespace:
    saved = []
    return SimpleNamespace(
        strategy=CountingStrategy(),
        world_size=world_size,
        global_step=0,
        current_epoch=1,
        saved=saved,
        save_checkpoint=saved.append,
    )


def train(callback: StopOnSignal, trainer: SimpleNamespace, steps: range) -> None:
    for step in steps:
        trainer.global_step = step  # at a batch's end, the optimizer step has been counted
        callback.on_train_batch_end(trainer, None, None, None, step - 1)


@pytest.mark.parametrize("world_size, collectives", [(1, 100), (2, 4)])
def test_processes_agree_every_n_steps_a_single_one_after_every_batch(world_size, collectives):
    callback, ddp = StopOnSignal("checkpoints", check_every_n_steps=25), trainer(world_size)
    train(callback, ddp, range(1, 101))
    assert ddp.strategy.collectives == collectives
    assert ddp.saved == []


@pytest.mark.parametrize("world_size, stopped_at", [(1, 31), (2, 50)])
def test_a_signal_stops_at_the_next_agreement_with_a_checkpoint(world_size, stopped_at):
    callback, ddp = StopOnSignal("checkpoints", check_every_n_steps=25), trainer(world_size)
    train(callback, ddp, range(1, 31))
    callback.received = signal.SIGTERM  # what the handler records
    with pytest.raises(
        TrainingStopped, match=rf"SIGTERM after batch {stopped_at} of epoch 1 \(global step {stopped_at}\).*resume=true"
    ):
        train(callback, ddp, range(31, 101))
    assert ddp.saved == ["checkpoints/last.ckpt"]


def test_a_period_below_one_step_is_refused(tmp_path):
    cfg = compose_config(["callbacks.stop_on_signal.check_every_n_steps=0"], tmp_path)
    with pytest.raises(
        UserError, match=r"callbacks\.stop_on_signal\.check_every_n_steps=0 is out of range: it must be >= 1\."
    ):
        check_config(cfg)
