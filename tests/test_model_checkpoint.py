"""callbacks/checkpointing.py: last.ckpt's ModelCheckpoint keeps a state key of its own beside the configured
ModelCheckpoints (Lightning refuses two stateful callbacks with one key), and theirs stay Lightning's."""

from lightning.pytorch.callbacks import ModelCheckpoint

from callbacks.checkpointing import LastCheckpoint


def test_last_checkpoint_keeps_a_key_of_its_own(tmp_path):
    last, periodic = (
        LastCheckpoint(dirpath=str(tmp_path)),
        ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1),
    )
    assert last.state_key.startswith("LastCheckpoint{") and last.state_key != periodic.state_key
    assert periodic.state_key.startswith(
        "ModelCheckpoint{"
    )  # the key under which checkpoints written before hold its state
