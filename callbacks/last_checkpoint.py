"""last.ckpt: the complete training state, rewritten at the end of every epoch; what resume=true and ckpt_path continue from.

ModelCheckpoint(save_last=True) rewrites last.ckpt only in a step where that same callback saved one of
its own checkpoints (Lightning 2.6), so beside a best-k checkpoint it lags behind whenever the metric
does not improve. This is a ModelCheckpoint of its own class, so that its state has its own key beside
the other ModelCheckpoints'.
"""

from lightning.pytorch.callbacks import ModelCheckpoint

LAST = "last"


class LastCheckpoint(ModelCheckpoint):
    def __init__(self, dirpath: str):
        super().__init__(
            dirpath=dirpath,
            filename=LAST,
            save_top_k=1,
            every_n_epochs=1,
            # after validation and the other checkpoints of the epoch: last.ckpt is the last file written
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
