"""The rules that turn our runs into a verdict on each of the seed's claims (the book, Results).

Each claim is a direction: the seed says A > B. For every training seed s, arms A and B of
that seed (both started from the same upstream run of seed s) give a difference d_s of a
metric; the verdict reads the 95% t-interval of the mean of d_s over the seeds
(`seed_interval`, from scipy): *reproduced* when the whole interval is above zero, *not
reproduced* when it is below, *inconclusive* when it holds zero, and *not testable here*
when the claim's condition for its test to mean something fails on our runs (the
condition and its measured reason are the claim's, in `claims.py`). Fewer than
`MIN_SEEDS` seeds make a verdict inconclusive, whatever the interval says.

Beside it, the per-scene noise of one seed (two standard errors of the per-scene
differences over the validation scenes, `per_scene_noise`) is shown, not used: it
measures how well a pair of models is scored, not how far two trainings land apart.
"""

import numpy as np
from scipy import stats

#: The labels a verdict can take.
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE = ALLOWED = (
    "reproduced", "not reproduced", "inconclusive", "not testable here")
#: The fewest training seeds a verdict is decided from.
MIN_SEEDS = 3
#: The confidence level of the interval over seeds.
CONFIDENCE = 0.95


def seed_interval(differences, confidence=CONFIDENCE):
    """(mean, low, high) of per-seed differences: the mean and its two-sided t-interval
    (`scipy.stats.ttest_1samp`). One seed has no spread: the interval is infinite. Equal
    differences have none either: the interval is the point itself."""
    d = np.asarray(differences, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, -np.inf, np.inf
    if np.ptp(d) <= 1e-12 * max(1.0, abs(mean)):  # equal up to rounding: scipy's moments would lose precision
        return mean, mean, mean
    interval = stats.ttest_1samp(d, 0.0).confidence_interval(confidence)
    return mean, float(interval.low), float(interval.high)


def decide(low, high, n_seeds):
    """The verdict on an interval of A - B over `n_seeds` seeds: reproduced above zero, not
    reproduced below zero (both bounds excluded), inconclusive when it holds zero or when
    fewer than MIN_SEEDS seeds were trained."""
    if n_seeds < MIN_SEEDS:
        return INCONCLUSIVE
    if low > 0:
        return REPRODUCED
    return NOT_REPRODUCED if high < 0 else INCONCLUSIVE


def combine(*labels):
    """The verdict on a claim of several decisive parts: not testable when any part is, not
    reproduced when any part is not (one contradicted part refutes the claim), reproduced when
    every part is, inconclusive otherwise."""
    if NOT_TESTABLE in labels:
        return NOT_TESTABLE
    if NOT_REPRODUCED in labels:
        return NOT_REPRODUCED
    return REPRODUCED if labels and all(label == REPRODUCED for label in labels) else INCONCLUSIVE


def per_scene_noise(scenes_a, scenes_b, index):
    """Two standard errors (ddof=1) of the per-scene differences a - b of one score, over the
    scenes both were scored on: `scenes_*` {order_id: [hss, f1, iou]}, `index` 0, 1 or 2.
    Infinite with fewer than two common scenes."""
    common = sorted(scenes_a.keys() & scenes_b.keys())
    d = np.array([scenes_a[k][index] - scenes_b[k][index] for k in common])
    return float(2 * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")


def fmt(mean, low, high):
    """A difference and its interval as the book writes them: "+0.123 [+0.045, +0.201]"."""
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"
