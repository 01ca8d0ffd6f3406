"""benchmarks/runs.py: the alternating (ABBA) order every comparing benchmark goes round its variants in, and the paired ratio."""

import pytest

from benchmarks.runs import alternating, paired_ratio


def test_variants_alternate_and_the_paired_ratio_is_the_median_of_each_repeats_ratio():
    assert list(alternating("ABC", 3)) == [
        (0, "A"),
        (0, "B"),
        (0, "C"),
        (1, "C"),
        (1, "B"),
        (1, "A"),
        (2, "A"),
        (2, "B"),
        (2, "C"),
    ]
    # a drift that slows both variants of repeat 2 alike leaves each repeat's ratio, and so the median, unmoved
    assert paired_ratio([10.5, 21.0, 10.2], [10.0, 20.0, 10.0]) == pytest.approx(1.05)
    with pytest.raises(ValueError):
        paired_ratio([1.0, 2.0], [1.0])
