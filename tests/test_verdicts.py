"""The verdict rules of the Results chapter, on constructed evidence with known outcomes."""

import itertools
import math
from collections import namedtuple

import pytest

from s23dr.verdicts import ALLOWED, combine, decide, fmt, paired, ratio_test

S = namedtuple("S", "hss f1 iou")
REP, NOT, INC = ALLOWED


def scores(**by_scene):
    """{order_id: S} from order_id=hss (f1 = hss / 2, iou = 0)."""
    return {k: S(hss=v, f1=v / 2, iou=0.0) for k, v in by_scene.items()}


# decide


@pytest.mark.parametrize("diff, noise, label", [
    (0.2, 0.1, REP), (-0.2, 0.1, NOT), (0.05, 0.1, INC), (-0.05, 0.1, INC),
    (0.1, 0.1, INC), (-0.1, 0.1, INC),  # on the bound is not enough either way
    (0.0, 0.0, INC), (1e-9, 0.0, REP), (-1e-9, 0.0, NOT),
    (5.0, math.inf, INC), (-5.0, math.inf, INC),
])
def test_decide(diff, noise, label):
    assert decide(diff, noise) == label


# combine


def expected_combination(labels):
    if NOT in labels:
        return NOT
    return REP if all(label == REP for label in labels) else INC


@pytest.mark.parametrize("labels", [p for n in (1, 2, 3) for p in itertools.product(ALLOWED, repeat=n)])
def test_combine_every_mix(labels):
    assert combine(*labels) == expected_combination(labels)


def test_combine_by_hand():
    assert combine(REP, REP) == REP
    assert combine(REP, NOT) == NOT and combine(NOT, REP) == NOT
    assert combine(INC, NOT) == NOT  # one contradicted part refutes the claim
    assert combine(REP, INC) == INC and combine(INC, INC) == INC
    assert combine(REP) == REP and combine(NOT) == NOT and combine(INC) == INC


# paired


def test_paired_reproduced_ignores_scenes_of_one_run():
    a = scores(s1=0.5, s2=0.7, s3=0.9, only_a=1.0)
    b = scores(s1=0.3, s2=0.5, s3=0.4, only_b=0.0)
    # differences 0.2, 0.2, 0.5: mean 0.3, sd sqrt(0.06 / 2), 2 * sd / sqrt(3) = 0.2
    diff, noise = paired(a, b)
    assert diff == pytest.approx(0.3) and noise == pytest.approx(0.2)
    assert decide(diff, noise) == REP


def test_paired_not_reproduced_is_the_mirror():
    a = scores(s1=0.5, s2=0.7, s3=0.9, only_a=1.0)
    b = scores(s1=0.3, s2=0.5, s3=0.4, only_b=0.0)
    diff, noise = paired(b, a)
    assert diff == pytest.approx(-0.3) and noise == pytest.approx(0.2)
    assert decide(diff, noise) == NOT


def test_paired_inconclusive():
    # differences 0.1, -0.1, 0.3: mean 0.1, sd 0.2, noise 0.4 / sqrt(3) ~ 0.23
    diff, noise = paired(scores(s1=0.6, s2=0.4, s3=0.8), scores(s1=0.5, s2=0.5, s3=0.5))
    assert diff == pytest.approx(0.1) and noise == pytest.approx(0.4 / math.sqrt(3))
    assert decide(diff, noise) == INC


def test_paired_metric():
    a, b = scores(s1=0.5, s2=0.7, s3=0.9), scores(s1=0.3, s2=0.5, s3=0.4)
    diff, noise = paired(a, b, "f1")  # f1 = hss / 2 halves both
    assert diff == pytest.approx(0.15) and noise == pytest.approx(0.1)
    assert paired(a, b, "iou") == (0.0, 0.0)


def test_paired_one_common_scene_has_infinite_noise():
    diff, noise = paired(scores(s1=0.9, only_a=0.0), scores(s1=0.1, only_b=1.0))
    assert diff == pytest.approx(0.8) and noise == math.inf
    assert decide(diff, noise) == INC


def test_paired_no_common_scene():
    assert paired(scores(s1=0.9), scores(s2=0.1)) == (0.0, math.inf)
    assert paired({}, {}) == (0.0, math.inf)
    assert decide(*paired(scores(s1=0.9), scores(s2=0.1))) == INC


# ratio_test


def test_ratio_test_reproduced_uses_the_last_three_evaluations():
    # a's last three 2.0, 2.1, 2.2 (sd 0.1; the early 9.0 is left out), b flat (sd 0)
    diff, noise = ratio_test([9.0, 2.0, 2.1, 2.2], [1.0, 1.0, 1.0])
    assert diff == pytest.approx(1.2) and noise == pytest.approx(0.2)
    assert decide(diff, noise) == REP


def test_ratio_test_not_reproduced():
    diff, noise = ratio_test([1.0, 1.0, 1.0], [9.0, 2.0, 2.1, 2.2])
    assert diff == pytest.approx(-1.2) and noise == pytest.approx(0.2)
    assert decide(diff, noise) == NOT


def test_ratio_test_inconclusive_combines_both_wobbles():
    # sd 0.3 and 0.4 combine to hypot 0.5, noise 1.0; final ratios 1.6 - 1.8
    diff, noise = ratio_test([1.0, 1.3, 1.6], [1.0, 1.4, 1.8])
    assert diff == pytest.approx(-0.2) and noise == pytest.approx(1.0)
    assert decide(diff, noise) == INC


def test_ratio_test_one_evaluation_has_infinite_noise():
    diff, noise = ratio_test([1.5], [1.0, 1.0, 1.0])
    assert diff == pytest.approx(0.5) and noise == math.inf
    assert ratio_test([1.0, 1.0, 1.0], [3.0])[1] == math.inf
    assert ratio_test([2.0], [1.0]) == (1.0, math.inf)
    assert decide(diff, noise) == INC


def test_ratio_test_two_evaluations():
    diff, noise = ratio_test([1.0, 1.2], [0.5, 0.5])  # sd of (1.0, 1.2) with ddof=1 = 0.2 / sqrt(2)
    assert diff == pytest.approx(0.7) and noise == pytest.approx(0.4 / math.sqrt(2))


# fmt


def test_fmt():
    assert fmt(0.1234, 0.05) == "+0.123 ± 0.050"
    assert fmt(-0.2, math.inf) == "-0.200 ± inf"
