"""The verdict rules of the Results chapter, on constructed evidence with known outcomes."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from s23dr.analysis.verdicts import (ALLOWED, INCONCLUSIVE, MIN_SEEDS, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, combine,
                            decide, fmt, per_scene_noise, seed_interval)


def test_seed_interval_is_the_t_interval_of_the_mean():
    d = [0.10, 0.14, 0.12]
    mean, low, high = seed_interval(d)
    half = stats.t.ppf(0.975, 2) * np.std(d, ddof=1) / math.sqrt(3)
    assert mean == pytest.approx(0.12) and (low, high) == pytest.approx((0.12 - half, 0.12 + half))


def test_seed_interval_edge_cases():
    assert seed_interval([0.3]) == (0.3, -math.inf, math.inf)  # one seed: no spread to measure
    assert seed_interval([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2, 0.2))


@pytest.mark.parametrize("low, high, seeds, label", [
    (0.01, 0.2, 3, REPRODUCED), (-0.2, -0.01, 3, NOT_REPRODUCED), (-0.1, 0.1, 3, INCONCLUSIVE),
    (0.0, 0.2, 3, INCONCLUSIVE), (-0.2, 0.0, 3, INCONCLUSIVE),  # a bound on zero is not enough
    (0.01, 0.2, MIN_SEEDS - 1, INCONCLUSIVE),                   # too few seeds decide nothing
    (-math.inf, math.inf, 5, INCONCLUSIVE),
])
def test_decide(low, high, seeds, label):
    assert decide(low, high, seeds) == label


def test_spread_over_seeds_not_per_scene_noise_decides():
    """Three seeds whose differences scatter around zero: inconclusive, however small each
    seed's per-scene noise (the trap of the old rule)."""
    mean, low, high = seed_interval([0.15, -0.10, 0.05])
    assert decide(low, high, 3) == INCONCLUSIVE
    mean, low, high = seed_interval([0.15, 0.10, 0.12])
    assert decide(low, high, 3) == REPRODUCED


def expected_combination(labels):
    if NOT_TESTABLE in labels:
        return NOT_TESTABLE
    if NOT_REPRODUCED in labels:
        return NOT_REPRODUCED
    return REPRODUCED if all(label == REPRODUCED for label in labels) else INCONCLUSIVE


@pytest.mark.parametrize("labels", [p for n in (1, 2, 3) for p in itertools.product(ALLOWED, repeat=n)])
def test_combine_every_mix(labels):
    assert combine(*labels) == expected_combination(labels)


def test_per_scene_noise_pairs_by_scene():
    a = {"s1": [0.5, 0, 0], "s2": [0.7, 0, 0], "s3": [0.9, 0, 0], "only_a": [1.0, 0, 0]}
    b = {"s1": [0.3, 0, 0], "s2": [0.5, 0, 0], "s3": [0.4, 0, 0], "only_b": [0.0, 0, 0]}
    # differences 0.2, 0.2, 0.5: sd sqrt(0.06 / 2), 2 * sd / sqrt(3) = 0.2
    assert per_scene_noise(a, b, 0) == pytest.approx(0.2)
    assert per_scene_noise(a, b, 1) == 0.0
    assert per_scene_noise({"s1": [1, 0, 0]}, {"s1": [0, 0, 0]}, 0) == math.inf


def test_fmt():
    assert fmt(0.1234, 0.05, 0.2) == "+0.123 [+0.050, +0.200]"
