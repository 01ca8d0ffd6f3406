"""Plain-language observations computed from a run's per-epoch curves (epochs counted from 0).

Overfitting rule: the epoch with the lowest val loss (the first, if tied) is followed by at least
`patience` epochs; over those epochs val loss stays above that minimum and ends at least `min_rise`
(relative) above it, while train loss ends below its value at that epoch. Then overfitting starts at
the epoch after the minimum. Taking the global minimum makes a noisy dip that is later beaten harmless;
asking for `patience` epochs and a relative rise keeps a flat, noisy plateau from counting.
"""

from dataclasses import dataclass

Curve = tuple[list[int], list[float]]  # epochs, values


@dataclass(frozen=True)
class Overfitting:
    onset: int  # the first epoch after the val loss minimum
    best_epoch: int
    best_val_loss: float
    last_val_loss: float
    train_loss_at_best: float
    last_train_loss: float

    def sentence(self) -> str:
        rise = 100 * (self.last_val_loss / self.best_val_loss - 1) if self.best_val_loss > 0 else float("inf")
        return (
            f"val loss rises from epoch {self.onset} while train loss keeps falling: overfitting from epoch {self.onset} "
            f"(val loss lowest at epoch {self.best_epoch}, {self.best_val_loss:.4f}, then {self.last_val_loss:.4f} at the last epoch, +{rise:.0f}%; "
            f"train loss {self.train_loss_at_best:.4f} -> {self.last_train_loss:.4f})."
        )


def detect_overfitting(
    train_loss: Curve, val_loss: Curve, patience: int = 3, min_rise: float = 0.05
) -> Overfitting | None:
    """The onset of overfitting by the rule above, or None."""
    train = dict(zip(*train_loss))
    val_epochs, val_values = val_loss
    if not val_values:
        return None
    best = min(range(len(val_values)), key=lambda position: val_values[position])
    after = val_values[best + 1 :]
    best_epoch, last_epoch = val_epochs[best], val_epochs[-1]
    if len(after) < patience or best_epoch not in train or last_epoch not in train:
        return None
    sustained = all(value > val_values[best] for value in after)
    risen = after[-1] >= val_values[best] * (1 + min_rise)
    train_falling = train[last_epoch] < train[best_epoch]
    if not (sustained and risen and train_falling):
        return None
    return Overfitting(
        val_epochs[best + 1], best_epoch, val_values[best], after[-1], train[best_epoch], train[last_epoch]
    )


def first_reaching(curve: Curve, target: float) -> int | None:
    """The first epoch at which the curve reaches `target` (>=), or None."""
    return next((epoch for epoch, value in zip(*curve) if value >= target), None)


def target_sentence(name: str, curve: Curve, target: float) -> str:
    """E.g. "train top-5 reached 95% at epoch 12", or how far it got."""
    label = metric_label(name)
    if not curve[1]:
        return f"{label}: not logged."
    reached = first_reaching(curve, target)
    if reached is not None:
        return f"{label} reached {100 * target:g}% at epoch {reached}."
    best = max(range(len(curve[1])), key=lambda position: curve[1][position])
    return f"{label} never reached {100 * target:g}% (best {100 * curve[1][best]:.2f}% at epoch {curve[0][best]})."


def still_improving(val_loss: Curve, window: int = 3) -> bool:
    """Val loss at its lowest in the last epoch and lower than `window` epochs before: more epochs may help."""
    values = val_loss[1]
    return len(values) > window and values[-1] == min(values) and values[-1] < values[-1 - window]


def metric_label(tag: str) -> str:
    """ "train/top5" -> "train top-5"."""
    split, _, name = tag.partition("/")
    return f"{split} {name.replace('top', 'top-')}"
