"""conf/callbacks: last.ckpt's ModelCheckpoint keeps a state key of its own beside the periodic one's (Lightning refuses
two stateful callbacks with one key), and theirs stay the keys under which earlier checkpoints hold their state."""

from hydra.utils import instantiate

from tests.helpers.compose import compose_config


def test_last_checkpoint_keeps_a_key_of_its_own(tmp_path):
    callbacks = compose_config([], tmp_path).callbacks
    last, periodic = (instantiate(callbacks[name]) for name in ("last_checkpoint", "periodic_checkpoint"))
    assert last.state_key != periodic.state_key
    assert periodic.state_key.startswith("ModelCheckpoint{")
