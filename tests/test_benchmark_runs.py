"""benchmarks/runs.py: the alternating (ABBA) order every comparing benchmark goes round its variants in, and the paired ratio."""

import pytest

from benchmarks.runs import alternating, paired_ratio


def test_alternating_reverses_the_order_every_other_repeat():
    assert list(alternating(["plain", "bare", "train.py"], 3)) == [
        (0, "plain"), (0, "bare"), (0, "train.py"),
        (1, "train.py"), (1, "bare"), (1, "plain"),
        (2, "plain"), (2, "bare"), (2, "train.py"),
    ]  # fmt: skip
    assert list(alternating("AB", 2)) == [(0, "A"), (0, "B"), (1, "B"), (1, "A")]


def test_paired_ratio_is_the_median_of_each_repeats_ratio():
    # a drift that slows both variants of repeat 2 alike leaves each repeat's ratio, and so the median, unmoved
    assert paired_ratio([10.5, 21.0, 10.2], [10.0, 20.0, 10.0]) == pytest.approx(1.05)


def test_paired_ratio_refuses_unpaired_lists():
    with pytest.raises(ValueError):
        paired_ratio([1.0, 2.0], [1.0])
