"""StopOnNonFiniteLoss (callbacks/checkpointing.py) keeps each step's loss and tests them together: it must still name
the first bad batch, for the scalar losses of automatic optimization and for the other shapes a manual-optimization step may return."""

from types import SimpleNamespace

import pytest
import torch

from callbacks.checkpointing import StopOnNonFiniteLoss
from user_errors import UserError


def single_process_trainer() -> SimpleNamespace:
    strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all: decision)
    return SimpleNamespace(strategy=strategy, checkpoint_callbacks=[], current_epoch=3, global_step=0)


@pytest.mark.parametrize("shape", [(), (4,)], ids=["scalar", "per-sample"])
def test_the_first_bad_batch_is_named_after_the_kept_losses_are_tested(shape):
    callback, trainer = StopOnNonFiniteLoss(check_every_n_steps=5), single_process_trainer()
    losses = [torch.full(shape, 0.5) for _ in range(5)]
    losses[2] = torch.full(shape, float("nan")) if not shape else torch.tensor([0.5, float("inf"), 0.5, 0.5])
    losses[4] = torch.full(shape, float("nan"))
    for batch_idx, loss in enumerate(losses[:4]):
        trainer.global_step = 10 + batch_idx
        callback.on_train_batch_end(trainer, None, {"loss": loss}, None, batch_idx)  # not looked at yet: no error
    trainer.global_step = 14
    with pytest.raises(UserError, match=r"at epoch 3, batch 2 \(global step 12\); .*no checkpoint had been saved yet"):
        callback.on_train_batch_end(trainer, None, {"loss": losses[4]}, None, 4)


def test_finite_losses_pass_and_are_forgotten_once_tested():
    callback, trainer = StopOnNonFiniteLoss(check_every_n_steps=2), single_process_trainer()
    for batch_idx in range(6):
        callback.on_train_batch_end(trainer, None, torch.tensor(1.0 + batch_idx), None, batch_idx)
    assert callback._unchecked == []
    callback.on_save_checkpoint(trainer, None, {})  # before a save: nothing left, nothing raised
