"""How a claim is ruled from its evidence (the book, Results: "How a verdict is decided"): each
part's per-seed values, interval, outcome and label (`rule_part`, by the tests of `verdicts`
and the rules of params/verdicts.yaml), a claim's label from its sub-claims' (`rule`), and
the words and table rows the book prints for them.
"""

import numpy as np

from . import verdicts
from .evidence import SCENE_SCORES, arm_params, changed_keys, evaluation, per_seed
from ..config import read_yaml

RULES = "params/verdicts.yaml"


def rules(path=RULES):
    """How a verdict is decided, fixed before the runs are read (params/verdicts.yaml)."""
    return read_yaml(path)


def rule_part(part, evidence, rules):
    """A part's figures: per-seed values (the difference, or for a share part the contrast
    part - share * whole), their interval, the label and outcome (`verdicts.decide`), the seeds
    its spread needs, for a share part the share with its interval, and the first seed's
    per-scene noise."""
    smallest = rules["smallest_effect"].get(part.metric.split()[-1], 0.0)
    diffs = per_seed(evidence, part.a, part.b, part.metrics)
    seeds, values, share = list(diffs), list(diffs.values()), None
    if part.test == "share":
        whole = per_seed(evidence, *part.whole, (part.metric, part.metric))
        seeds = [s for s in seeds if s in whole]
        parts_, wholes = [diffs[s] for s in seeds], [whole[s] for s in seeds]
        values = [p - rules["share"] * w for p, w in zip(parts_, wholes)]
        share = verdicts.share_interval(parts_, wholes)
    mean, low, high = verdicts.seed_interval(values)
    label, outcome = verdicts.decide(part.test, low, high, len(seeds), smallest)
    score = part.metrics[0].split()[-1]
    noise = None
    if seeds and score in SCENE_SCORES:
        first_a, first_b = evidence[part.a][seeds[0]], evidence[part.b][seeds[0]]
        noise = verdicts.per_scene_noise(evaluation(first_a, part.metrics[0])["scenes"],
                                         evaluation(first_b, part.metrics[1])["scenes"], SCENE_SCORES.index(score))
    return {"part": part.name, "key": part.key, "words": part.words, "test": part.test, "a": part.a, "b": part.b,
            "metric": part.metric, "metric_b": part.metrics[1], "decides": part.decides, "whole": part.whole,
            "seeds": seeds, "differences": values, "mean": mean, "low": low, "high": high, "smallest": smallest,
            "share": share, "label": label if part.decides else None, "outcome": outcome,
            "differs": part.differs, "cause": part.cause, "seeds needed": verdicts.seeds_needed(part.test, values, smallest, rules["seed_cap"]),
            "per-scene noise": noise}


def tested(result, share=None):
    """What a part tests, in words: the difference, and for a share part the contrast."""
    of_b = "" if result["metric_b"] == result["metric"] else f"'s {result['metric_b']}"
    what = f"{result['metric']} of {result['a']} minus {result['b']}{of_b}"
    if result["test"] == "share":
        return f"({what}) minus {share:g} × ({result['metric']} of {result['whole'][0]} minus {result['whole'][1]})"
    return what


def outcome_text(result):
    """A sub-claim's outcome, with the Δ it was read against where its test reads one."""
    return result["outcome"] + (f" (Δ {result['smallest']:g})" if result["test"] != "share" else "")


def describe(result, share=None):
    """A part's evidence in one line, in full."""
    noise = result["per-scene noise"]
    text = (f"{result['part']}: {tested(result, share)} {verdicts.fmt(result['mean'], result['low'], result['high'])} "
            f"over {len(result['seeds'])} seeds")
    if result["share"] is not None:
        text += f", a share of {verdicts.fmt(*result['share'])}"
    if result["decides"]:
        text += f": {outcome_text(result)}"
    return text + (f" (one seed's per-scene noise ±{noise:.3f})" if noise is not None else "")


def gain_split(results):
    """A stage's gain split by cause, seed by seed, from a claim's parts that name a `cause`:
    ({cause: {seed: value}}, the share part's (share, low, high) or None); what the named
    causes leave of the whole is "the rest". Empty when the claim splits no gain."""
    causes = {r["cause"]: dict(zip(r["seeds"], r["differences"])) for r in results if r["cause"]}
    whole = causes.pop("whole", None)
    if not causes or whole is None:
        return {}, None
    rest = {s: v - sum(c.get(s, 0.0) for c in causes.values()) for s, v in whole.items()}
    if any(abs(v) > 1e-9 for v in rest.values()):
        causes["the rest"] = rest
    share = next((r["share"] for r in results if r["share"] is not None), None)
    return causes, share


def seeds_text(result, cap):
    """How many seeds a sub-claim's measured spread needs to decide it, with the computation."""
    values = np.asarray(result["differences"], dtype=float)
    if len(values) < 2:
        return "no spread measured"
    sd, needed = float(values.std(ddof=1)), result["seeds needed"]
    if needed is None:
        return f"over the cap of {cap} (sd {sd:.3f}; t·sd/√n = {verdicts.half_width(sd, cap):.3f} at n = {cap})"
    return f"{needed} (sd {sd:.3f}; t·sd/√n = {verdicts.half_width(sd, needed):.3f} at n = {needed})"


def row(result, rules, met, reason):
    """A sub-claim's row of the verdict table; an undecided one says what would decide it."""
    if not met:
        decide_by = f"a regime where its condition holds ({reason})"
    elif len(result["seeds"]) < verdicts.MIN_SEEDS:
        decide_by = f"at least {verdicts.MIN_SEEDS} seeds of both arms"
    elif result["label"] == verdicts.INCONCLUSIVE:
        decide_by = ("more seeds than the cap" if result["seeds needed"] is None
                     else f"{result['seeds needed']} seeds at the spread measured")
    else:
        decide_by = "—"
    return {"the seed's words": result["words"], "what we tested": tested(result, rules["share"]),
            "effect [95% interval]": verdicts.fmt(result["mean"], result["low"], result["high"]),
            "share [95% interval]": verdicts.fmt(*result["share"]) if result["share"] else "—",
            "outcome": outcome_text(result),
            "label": result["label"], "seeds": len(result["seeds"]),
            "seeds its spread needs": seeds_text(result, rules["seed_cap"]), "what would decide it": decide_by}


def rule(claim, evidence, rules):
    """(verdict, every part's figures, whether the condition is met, its measured reason). A
    decisive part's label is its sub-claim's; the claim's is their `verdicts.combine`."""
    met, reason = claim.check(evidence) if claim.check else (True, "")
    results = [rule_part(part, evidence, rules) for part in claim.parts]
    if not met:
        for r in results:
            r["label"] = verdicts.NOT_TESTABLE if r["decides"] else None
    decisive = [r["label"] for r in results if r["decides"]]
    return verdicts.combine(*decisive), results, met, reason


def differs(recipes, result):
    """What tells a part's two arms apart: its own words, or the recipe keys in which they differ."""
    return result["differs"] or "the arms differ in " + ", ".join(
        changed_keys(arm_params(recipes, result["a"]), arm_params(recipes, result["b"])))
