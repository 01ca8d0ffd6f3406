"""K-fold cross-validation: stratified, seeded folds of a training set, and the subsets they make.

Every class's samples are shuffled with the seed and dealt out to the folds in turn, classes one after
the other, so each fold holds each class's samples to within one and the folds' sizes differ by at most
one (what scikit-learn's StratifiedKFold guarantees, without the dependency). The same labels, number
of folds and seed always give the same folds, so every fold of a sweep, and eval.py later, sees the
same partition.
"""

import logging

import torch
from torch.utils.data import Dataset, Subset

from user_errors import UserError

log = logging.getLogger(__name__)


def check_fold_settings(num_folds: int | None, fold: int) -> None:
    """One sentence for settings that name no valid fold."""
    if num_folds is None:
        if fold != 0:  # otherwise every "fold" of a sweep would silently train the same split
            raise UserError(
                f"data.fold={fold} needs data.num_folds, the number of folds: e.g. data.num_folds=5 data.fold={fold}."
            )
        return
    if not isinstance(num_folds, int) or num_folds < 2:
        raise UserError(
            f"data.num_folds must be at least 2 (train on K-1 folds, validate on one), got {num_folds}; data.num_folds=null keeps the single seeded validation split."
        )
    if not isinstance(fold, int) or not 0 <= fold < num_folds:
        raise UserError(
            f"data.fold must be between 0 and {num_folds - 1} (data.num_folds={num_folds} folds, counted from 0), got {fold}."
        )


def fold_of_each_sample(labels: torch.Tensor, num_folds: int, seed: int) -> torch.Tensor:
    """(N,) int64: the fold of every sample, stratified by label and fixed by `seed`."""
    if len(labels) < num_folds:
        raise UserError(
            f"data.num_folds={num_folds} folds need at least {num_folds} training images, there are {len(labels)}: choose fewer folds."
        )
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(labels), generator=generator)
    # a stable sort by label keeps the shuffled order within each class: class by class, in random order
    by_class = shuffled[torch.sort(labels[shuffled], stable=True).indices]
    folds = torch.empty(len(labels), dtype=torch.long)
    folds[by_class] = torch.arange(len(labels)) % num_folds
    rare = torch.unique(labels[by_class], return_counts=True)
    too_few = [int(label) for label, count in zip(*rare) if count < num_folds]
    if too_few:
        log.warning(
            f"Classes {too_few[:10]} have fewer images than the {num_folds} folds: some folds validate without them."
        )
    return folds


def fold_positions(labels: torch.Tensor, num_folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (ascending) of the samples trained on (every fold but `fold`) and validated on (fold `fold`)."""
    folds = fold_of_each_sample(labels, num_folds, seed)
    return torch.nonzero(folds != fold).flatten(), torch.nonzero(folds == fold).flatten()


class FoldSubset(Subset):
    """The samples of `dataset` at `positions`, served as whole batches like the dataset itself, with the
    `labels` and `source_index` (the samples' places in their source split) that the callbacks read."""

    @property
    def labels(self) -> torch.Tensor:
        return self.dataset.labels[self.indices]

    @property
    def source_index(self) -> torch.Tensor:
        return self.dataset.source_index[self.indices]

    def __getitems__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        return self.dataset.__getitems__(self.indices[torch.as_tensor(positions, dtype=torch.long)])


def split_into_folds(dataset: Dataset, num_folds: int, fold: int, seed: int) -> tuple[FoldSubset, FoldSubset]:
    """(train, val) subsets of a labelled dataset: every fold but `fold`, and fold `fold`."""
    train_positions, val_positions = fold_positions(dataset.labels, num_folds, fold, seed)
    log.info(
        f"Fold {fold} of {num_folds}: training on {len(train_positions)} images, validating on {len(val_positions)}"
    )
    return FoldSubset(dataset, train_positions), FoldSubset(dataset, val_positions)
