"""The verdict rules of the Results chapter, on constructed evidence with known outcomes."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from s23dr.analysis.verdicts import (ALLOWED, EFFECT, INCONCLUSIVE, MIN_SEEDS, NO_EFFECT, NOT_REPRODUCED, NOT_TESTABLE,
                                     REPRODUCED, TRIVIAL, UNDECIDED, combine, decide, fmt, half_width, outcome,
                                     per_scene_noise, seed_interval, seeds_needed, share_interval)


def test_seed_interval_is_the_t_interval_of_the_mean():
    d = [0.10, 0.14, 0.12]
    mean, low, high = seed_interval(d)
    half = stats.t.ppf(0.975, 2) * np.std(d, ddof=1) / math.sqrt(3)
    assert mean == pytest.approx(0.12) and (low, high) == pytest.approx((0.12 - half, 0.12 + half))


def test_seed_interval_edge_cases():
    assert seed_interval([0.3]) == (0.3, -math.inf, math.inf)  # one seed: no spread to measure
    assert seed_interval([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2, 0.2))


@pytest.mark.parametrize("low, high, found", [
    (0.02, 0.2, EFFECT), (-0.2, -0.02, EFFECT),      # beyond zero and beyond ±Δ
    (-0.01, 0.012, NO_EFFECT),                        # inside ±Δ, holding zero: an absence, decided
    (0.002, 0.01, TRIVIAL),                           # nonzero, but inside ±Δ
    (-0.1, 0.1, UNDECIDED), (0.0, 0.2, UNDECIDED),    # a bound on zero is not enough
])
def test_the_four_outcomes_of_an_existence_test(low, high, found):
    assert outcome(low, high, 0.015) == found


@pytest.mark.parametrize("test, low, high, seeds, label", [
    ("exists", 0.02, 0.2, 3, REPRODUCED), ("exists", -0.2, -0.02, 3, NOT_REPRODUCED),
    ("exists", -0.01, 0.01, 3, NOT_REPRODUCED),       # no effect of interest: "not reproduced" is reachable
    ("exists", 0.002, 0.01, 3, NOT_REPRODUCED),       # an effect too small to be the seed's
    ("exists", -0.1, 0.1, 3, INCONCLUSIVE),
    ("exists", 0.02, 0.2, MIN_SEEDS - 1, INCONCLUSIVE),  # too few seeds decide nothing
    ("exists", -math.inf, math.inf, 5, INCONCLUSIVE),
    ("share", 0.01, 0.2, 3, REPRODUCED), ("share", -0.2, -0.01, 3, NOT_REPRODUCED), ("share", -0.1, 0.1, 3, INCONCLUSIVE),
    ("beyond", 0.02, 0.2, 3, REPRODUCED), ("beyond", 0.005, 0.2, 3, INCONCLUSIVE),  # read against Δ, not zero
    ("beyond", -0.1, 0.01, 3, NOT_REPRODUCED),
    ("within", -0.1, 0.01, 3, REPRODUCED), ("within", 0.02, 0.2, 3, NOT_REPRODUCED),  # the absence of a fall beyond Δ
    ("within", 0.005, 0.2, 3, INCONCLUSIVE),
])
def test_decide(test, low, high, seeds, label):
    assert decide(test, low, high, seeds, 0.015)[0] == label


def test_spread_over_seeds_not_per_scene_noise_decides():
    """Three seeds whose differences scatter around zero: inconclusive, however small each
    seed's per-scene noise (the trap of the old rule)."""
    mean, low, high = seed_interval([0.15, -0.10, 0.05])
    assert decide("exists", low, high, 3, 0.015)[0] == INCONCLUSIVE
    mean, low, high = seed_interval([0.15, 0.10, 0.12])
    assert decide("exists", low, high, 3, 0.015)[0] == REPRODUCED


def test_share_interval_is_fiellers():
    """The share of a part in a whole and Fieller's interval: its bounds r solve
    (mean part - r mean whole)^2 = t^2 var(part - r whole) / n."""
    part, whole = np.array([0.04, 0.05, 0.03, 0.045]), np.array([0.22, 0.23, 0.21, 0.24])
    share, low, high = share_interval(part, whole)
    assert share == pytest.approx(part.mean() / whole.mean())
    t = stats.t.ppf(0.975, 3)
    for r in (low, high):
        d = part - r * whole
        assert d.mean() ** 2 == pytest.approx(t ** 2 * d.var(ddof=1) / 4)
    assert low < share < high
    # a whole indistinguishable from zero bounds no share
    assert share_interval([0.1, 0.2, 0.1], [0.1, -0.1, 0.05])[1:] == (-math.inf, math.inf)


def test_seeds_needed_is_the_fewest_whose_interval_decides():
    d = [0.04, 0.06, 0.02]  # mean 0.04, sd 0.02
    n = seeds_needed("exists", d, 0.015)
    assert half_width(0.02, n) < 0.04 <= half_width(0.02, n - 1)
    # an absence needs the interval inside ±Δ: room Δ - |mean|
    assert half_width(0.02, seeds_needed("exists", [0.0, 0.02, -0.02], 0.05)) < 0.05
    assert seeds_needed("share", [0.0, 0.02, -0.02], cap=6) is None  # a mean on the bound: never
    assert seeds_needed("exists", [0.10, 0.11, 0.12], 0.015) == MIN_SEEDS


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
