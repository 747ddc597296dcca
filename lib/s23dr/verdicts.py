"""The rules that turn our numbers into a verdict on each of the seed's claims.

Each claim is a direction: the seed says A > B. We compute the difference A - B and its
noise, and call the claim *reproduced* when the difference exceeds its noise, *not
reproduced* when it is below minus its noise (the opposite direction), *inconclusive*
otherwise. The evidence is passed in explicitly: per-scene scores as
``{order_id: score}`` (any object with ``.hss``, ``.f1``, ``.iou``, e.g.
``metrics.Score``), loss ratios as the list of a run's evaluations, oldest first.
"""

import numpy as np

#: The only labels a verdict can take.
ALLOWED = ("reproduced", "not reproduced", "inconclusive")


def decide(diff, noise):
    """The verdict on a difference A - B: reproduced above its noise, not reproduced below
    minus its noise (the opposite direction), inconclusive in between (both bounds
    excluded: a difference equal to its noise is not enough)."""
    if diff > noise:
        return "reproduced"
    return "not reproduced" if diff < -noise else "inconclusive"


def combine(*labels):
    """The verdict on a claim of several parts: reproduced when every part is, not
    reproduced when any part is not (one contradicted part refutes the claim),
    inconclusive otherwise."""
    if "not reproduced" in labels:
        return "not reproduced"
    return "reproduced" if all(label == "reproduced" for label in labels) else "inconclusive"


def paired(scores_a, scores_b, metric="hss"):
    """Mean over the scenes both runs were scored on (paired by order_id) of the per-scene
    difference a - b of `metric`, and its noise: two standard errors (ddof=1) of those
    differences, the run-to-run noise we can estimate without training each run several
    times. With fewer than two common scenes there is no spread to estimate, so the noise
    is infinite (never decisive); with none the difference is 0."""
    common = sorted(scores_a.keys() & scores_b.keys())
    d = np.array([getattr(scores_a[k], metric) - getattr(scores_b[k], metric) for k in common])
    if len(d) < 2:
        return float(d.mean()) if len(d) else 0.0, float("inf")
    return float(d.mean()), float(2 * d.std(ddof=1) / np.sqrt(len(d)))


def ratio_test(ratios_a, ratios_b):
    """Final loss ratio of run a minus run b, and its noise: two standard deviations
    (ddof=1) of each run's last three evaluations, combined as np.hypot, i.e. how much the
    ratio wobbles from one evaluation to the next. A run with a single evaluation has no
    wobble to measure, so the noise is infinite (never decisive)."""
    last = [list(ratios_a)[-3:], list(ratios_b)[-3:]]
    wobble = [np.std(v, ddof=1) if len(v) > 1 else float("inf") for v in last]
    return last[0][-1] - last[1][-1], float(2 * np.hypot(*wobble))


def fmt(diff, noise):
    """A difference and its noise as the verdict table writes them: "+0.123 ± 0.045"."""
    return f"{diff:+.3f} ± {noise:.3f}"
