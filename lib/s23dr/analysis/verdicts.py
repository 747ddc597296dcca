"""The rules that turn our runs into a verdict on each of the seed's claims (the book, Results).

A claim splits into *sub-claims*, each one sentence of the seed tested as written, on a
per-seed contrast of two arms that start from the same upstream run of that seed. Every
sub-claim reads the 95% t-interval of the mean of its contrast over the seeds
(`seed_interval`), by one of four tests fixed before the runs are read (params/verdicts.yaml):

- *exists* ("A beats B by an amount that matters"): the interval against zero and against
  the smallest effect of interest ±Δ (two one-sided tests at the interval's level, Lakens
  2017), four outcomes: an effect of interest (reproduced when positive), no effect of
  interest, nonzero but below interest (both not reproduced), undecided (inconclusive);
- *share* ("B's gain over C comes from A"): per seed part − s·whole (A − B minus s times
  the whole gain), reproduced when its interval lies above zero (the change carries at
  least the share s), not reproduced when below; the share itself with Fieller's interval;
- *beyond* ("A falls below B", a loss that matters): the interval against Δ alone;
- *within* ("A does not fall below B", the absence of such a loss): the same interval, with
  the labels the other way round (an equivalence bound: reproduced when it lies under Δ).

Fewer than `MIN_SEEDS` seeds decide nothing. `seeds_needed` says how many seeds the measured
spread needs to decide a sub-claim left undecided.
"""

import math

import numpy as np
from scipy import stats

#: The labels a verdict can take.
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE = ALLOWED = (
    "reproduced", "not reproduced", "inconclusive", "not testable here")
#: The outcomes of an existence test (against zero and against ±Δ).
EFFECT, NO_EFFECT, TRIVIAL, UNDECIDED = OUTCOMES = (
    "an effect of interest", "no effect of interest", "nonzero but below interest", "undecided")
#: The fewest training seeds a verdict is decided from.
MIN_SEEDS = 3
#: The confidence level of the interval over seeds.
CONFIDENCE = 0.95


def seed_interval(values, confidence=CONFIDENCE):
    """(mean, low, high) of per-seed values: the mean and its two-sided t-interval
    (`scipy.stats.ttest_1samp`). No seed has no mean, one seed no spread: the interval is
    infinite. Equal values have none either: the interval is the point itself."""
    d = np.asarray(values, dtype=float)
    if len(d) == 0:
        return float("nan"), -np.inf, np.inf
    mean = float(d.mean())
    if len(d) < 2:
        return mean, -np.inf, np.inf
    if np.ptp(d) <= 1e-12 * max(1.0, abs(mean)):  # equal up to rounding: scipy's moments would lose precision
        return mean, mean, mean
    interval = stats.ttest_1samp(d, 0.0).confidence_interval(confidence)
    return mean, float(interval.low), float(interval.high)


def outcome(low, high, smallest):
    """The existence test's outcome for an interval and a smallest effect of interest Δ:
    nonzero when the interval excludes zero, equivalent when it lies inside (−Δ, +Δ)."""
    nonzero, equivalent = low > 0 or high < 0, -smallest < low and high < smallest
    if nonzero:
        return TRIVIAL if equivalent else EFFECT
    return NO_EFFECT if equivalent else UNDECIDED


def decide(test, low, high, n_seeds, smallest=0.0):
    """(label, outcome) of a sub-claim's interval over `n_seeds` seeds under its `test`
    ("exists", "share", "beyond" or "within", see the module's docstring)."""
    if n_seeds < MIN_SEEDS:
        return INCONCLUSIVE, f"fewer than {MIN_SEEDS} seeds"
    if test == "exists":
        found = outcome(low, high, smallest)
        if found == EFFECT:
            return (REPRODUCED if low > 0 else NOT_REPRODUCED), found + (" (the other way)" if high < 0 else "")
        return (INCONCLUSIVE if found == UNDECIDED else NOT_REPRODUCED), found
    bound, name = (0.0, "the share") if test == "share" else (smallest, "Δ")
    above, below = (NOT_REPRODUCED, REPRODUCED) if test == "within" else (REPRODUCED, NOT_REPRODUCED)
    if low > bound:
        return above, "above " + name
    if high < bound:
        return below, "below " + name
    return INCONCLUSIVE, UNDECIDED


def combine(*labels):
    """The verdict on a claim of several sub-claims: not testable when any is, not reproduced
    when any is not (one contradicted sentence refutes the claim), reproduced when every one
    is, inconclusive otherwise."""
    if NOT_TESTABLE in labels:
        return NOT_TESTABLE
    if NOT_REPRODUCED in labels:
        return NOT_REPRODUCED
    return REPRODUCED if labels and all(label == REPRODUCED for label in labels) else INCONCLUSIVE


def share_interval(part, whole, confidence=CONFIDENCE):
    """(share, low, high): the ratio of the mean part to the mean whole over seeds and its
    Fieller interval (paired values; the per-seed ratio is skewed). Unbounded (±inf) when
    the whole is not itself distinguishable from zero."""
    p, w = np.asarray(part, dtype=float), np.asarray(whole, dtype=float)
    n = len(p)
    share = float(p.mean() / w.mean()) if n and w.mean() else float("nan")
    if n < 2:
        return share, -np.inf, np.inf
    t2 = stats.t.ppf(0.5 + confidence / 2, n - 1) ** 2
    cov = np.cov(p, w, ddof=1) / n  # the covariance of the two means
    a = w.mean() ** 2 - t2 * cov[1, 1]
    b = p.mean() * w.mean() - t2 * cov[0, 1]
    c = p.mean() ** 2 - t2 * cov[0, 0]
    disc = b * b - a * c
    if a <= 0 or disc < 0:
        return share, -np.inf, np.inf
    return share, float((b - math.sqrt(disc)) / a), float((b + math.sqrt(disc)) / a)


def half_width(sd, n, confidence=CONFIDENCE):
    """The t-interval's half-width over `n` seeds of values with standard deviation `sd`."""
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))


def seeds_needed(test, values, smallest=0.0, cap=None):
    """How many seeds the measured spread of `values` needs for the interval to decide the
    sub-claim, were their mean the true one: the fewest n whose `half_width` is under the
    distance from the mean to the nearest bound that decides (zero, or ±Δ for *exists*, Δ
    for *beyond* and *within*). None when no n up to `cap` decides it (or the values have no spread)."""
    d = np.asarray(values, dtype=float)
    if len(d) < 2:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if test == "exists":
        room = max(abs(mean), smallest - abs(mean))
    else:
        room = abs(mean - (0.0 if test == "share" else smallest))
    for n in range(2, (cap or 1000) + 1):
        if half_width(sd, n) < room:
            return max(n, MIN_SEEDS)
    return None


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
