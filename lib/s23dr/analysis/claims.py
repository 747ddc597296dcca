"""The seed's claims as data: the runs each compares, the metric, the condition under which
its test means something, and the verdict its runs give (the book, Results: the verdicts).

A claim has *parts*: each a difference "arm A minus arm B" of one metric, read seed by seed
(`verdicts.seed_interval`). A decisive part is what the verdict reads, and compares two
arms that differ in one thing (a control: `changed_keys` lists what differs, from the
params); a part shown beside it splits the rest of a difference with several causes. The
evidence is the runs' metrics logs: `{arm: {seed: rows}}` (`gather`).
"""

import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import checkpoint
from . import verdicts
from ..config import load_params
from ..experiments import stage_files, stage_runs
from ..rundir import MetricsLog

#: The score columns of an evaluation's per-scene scores (`inference.Validation`).
SCENE_SCORES = ("hss", "f1", "iou")
#: Keys that name or place a run rather than change what it trains.
NOT_RECIPE = ("stage", "init_from", "profile", "sweep_lr", "seeds", "train.seed")


@dataclass(frozen=True)
class Part:
    """metric(a) - metric_b(b) per training seed (metric_b is metric unless named). Metrics: an
    evaluation's hss, f1, iou or ratio (val over train loss) at a run's end, `peak hss` (its
    best evaluation) or `lowest hss` (its worst)."""
    name: str
    a: str
    b: str
    metric: str
    decides: bool = True
    metric_b: str = None

    @property
    def metrics(self):
        """(a's metric, b's metric)."""
        return self.metric, self.metric_b or self.metric


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    seed_evidence: str
    parts: tuple
    condition: str = "none: every run can show it"
    check: Callable = field(default=None, repr=False)  # evidence -> (met, measured reason)


def arm_of(params, run):
    """The arm a run of a stage belongs to: the stage, or `<stage> lr=<LR>` for a run of a sweep
    (its seeds are the arm's repeats)."""
    return params["stage"] + (f" lr={run['schedule']['lr']:g}" if params["sweep_lr"] else "")


def gather(recipes, runs):
    """{arm: {seed: metrics rows}} of every run of `recipes` ({stage: params}) found under `runs`."""
    found = {}
    for params in recipes.values():
        for run, run_dir in stage_runs(params, runs):
            log = run_dir / "metrics.jsonl"
            if log.is_file():
                found.setdefault(arm_of(params, run), {})[run["train"]["seed"]] = MetricsLog.read(log)
    return found


def evals(rows):
    return [r for r in rows if r["kind"] == "eval"]


def evaluation(rows, metric):
    """The evaluation row a metric reads: the last one, or the best / worst by HSS."""
    rows = evals(rows)
    if metric == "peak hss":
        return max(rows, key=lambda r: r["hss"])
    if metric == "lowest hss":
        return min(rows, key=lambda r: r["hss"])
    return rows[-1]


def value(rows, metric):
    return evaluation(rows, metric)[metric.split()[-1]]


def changed_keys(a, b):
    """The recipe keys in which params `a` and `b` differ (names and seeds left out)."""
    fa, fb = checkpoint.flatten(a), checkpoint.flatten(b)
    return sorted(k for k in fa.keys() | fb.keys()
                  if fa.get(k) != fb.get(k) and not any(k == n or k.startswith(n + ".") for n in NOT_RECIPE))


def rule_part(part, evidence):
    """A part's figures: per-seed differences, interval, label, the first seed's per-scene noise."""
    a, b = evidence.get(part.a, {}), evidence.get(part.b, {})
    metric_a, metric_b = part.metrics
    common = sorted(a.keys() & b.keys())
    diffs = [value(a[s], metric_a) - value(b[s], metric_b) for s in common]
    mean, low, high = verdicts.seed_interval(diffs) if diffs else (float("nan"), -np.inf, np.inf)
    score = metric_a.split()[-1]
    noise = (verdicts.per_scene_noise(evaluation(a[common[0]], metric_a)["scenes"],
                                      evaluation(b[common[0]], metric_b)["scenes"], SCENE_SCORES.index(score))
             if common and score in SCENE_SCORES else None)
    return {"part": part.name, "a": part.a, "b": part.b, "metric": part.metric, "metric_b": metric_b,
            "decides": part.decides,
            "seeds": common, "differences": diffs, "mean": mean, "low": low, "high": high,
            "label": verdicts.decide(low, high, len(common)), "per-scene noise": noise}


def describe(result):
    """A part's evidence in one line, in full."""
    noise = result["per-scene noise"]
    of_b = "" if result["metric_b"] == result["metric"] else f"'s {result['metric_b']}"
    return (f"{result['part']}: {result['metric']} {result['a']} minus {result['b']}{of_b} "
            f"{verdicts.fmt(result['mean'], result['low'], result['high'])} over {len(result['seeds'])} seeds"
            + (f" (one seed's per-scene noise ±{noise:.3f})" if noise is not None else ""))


def rule(claim, evidence):
    """(verdict, every part's figures, whether the condition is met, its measured reason)."""
    met, reason = claim.check(evidence) if claim.check else (True, "")
    results = [rule_part(part, evidence) for part in claim.parts]
    decisive = [r["label"] for r in results if r["decides"]]
    label = verdicts.combine(*decisive) if met else verdicts.NOT_TESTABLE
    return label, results, met, reason


def scores_at_all(arm, metric="hss"):
    """A condition: every seed of `arm` scores above zero (a run whose every confidence stays
    below the threshold scores 0 and can show no difference)."""
    def check(evidence):
        finals = {s: value(rows, metric) for s, rows in evidence.get(arm, {}).items()}
        met = bool(finals) and all(v > 0 for v in finals.values())
        return met, f"{arm}'s final {metric} per seed: " + ", ".join(f"{v:.3f}" for v in finals.values())
    return check


def overfits(arm, passes, seed_passes):
    """Claim 1's condition: `arm`'s final val/train loss ratio is above 1 by more than its
    interval over seeds, i.e. it overfits measurably; `passes` is how often it saw each
    training scene, `seed_passes` how often the seed's stage 1 did."""
    def check(evidence):
        ratios = [value(rows, "ratio") for rows in evidence.get(arm, {}).values()]
        mean, low, high = verdicts.seed_interval(ratios) if ratios else (float("nan"), -np.inf, np.inf)
        met = len(ratios) >= verdicts.MIN_SEEDS and low > 1
        return met, (f"{arm}'s val/train loss ratio {mean:.3f} [{low:.3f}, {high:.3f}] over {len(ratios)} seeds "
                     f"{'is' if met else 'is not'} above 1; each training scene was seen {passes:.0f} times "
                     f"(the seed's stage 1: about {seed_passes:.0f})")
    return check


def divergence(rows, untrained):
    """The training row of a run's log (`rows`) whose loss rose highest above the untrained
    model's (the first logged loss of `untrained`, the upstream log of the same seed), the mark
    of a divergence; None when no loss rose above it."""
    start = next((r["total"] for r in untrained if r["kind"] == "train"), None)
    peak = max((r for r in rows if r["kind"] == "train"), key=lambda r: r["total"], default=None)
    return peak if start is not None and peak is not None and peak["total"] > start else None


def did_not_diverge(arm, upstream):
    """Claim 3's condition: no seed of `arm` logs a training loss, at any step, above that of the
    untrained model (`divergence`): a run that diverged says nothing about forgetting, and the
    book reports it as divergence."""
    def check(evidence):
        rose = []
        for seed, rows in evidence.get(arm, {}).items():
            untrained = evidence.get(upstream, {}).get(seed, [])
            peak = divergence(rows, untrained)
            if peak is not None:
                start = next(r["total"] for r in untrained if r["kind"] == "train")
                rose.append(f"seed {seed}: {peak['total']:.3f} at step {peak['step']}, untrained {start:.3f}")
        return not rose, (f"{arm} diverged (a training loss above the untrained model's: {'; '.join(rose)})"
                          if rose else f"no training loss of {arm} rose above the untrained model's")
    return check


def seed_passes():
    """How many times the seed's stage 1 saw each training scene: its steps times its batch over
    the real training split's size (params at `full`; base.yaml data.synthetic.train mirrors it)."""
    full = load_params(stage_files()["stage1"])
    return passes(full, full["data"]["synthetic"]["train"])


def passes(params, train_scenes):
    """How many times a run of `params` sees each of its `train_scenes` training scenes."""
    sched = params["schedule"]
    return (sched["end_step"] - sched["start_step"]) * params["train"]["batch_size"] / train_scenes


def passes_per_scene(evidence, arm, params):
    """`passes` of a run of `arm`, over the training scenes its log says it read."""
    runs = [r for rows in evidence.get(arm, {}).values() for r in rows if r["kind"] == "run"]
    return passes(params, runs[0]["train_scenes"]) if runs else float("nan")


def claims(recipes, baseline, evidence):
    """The seed's claims 1-4 wired to this book's arms: `recipes` {stage: params} at the
    profile, `baseline` the seed's figures (params/baseline_results.yaml)."""
    s1, s2, s3 = (baseline["stages"][s] for s in ("stage1", "stage2", "stage3"))
    ratios = baseline["train_val_ratio"]
    high = recipes["ablation_high_lr"]
    high_arms = [f"ablation_high_lr lr={lr:g}" for lr in high["sweep_lr"]]
    return [
        Claim(1, "2048 points first generalises better than 4096 from scratch, which overfits",
              f"train/val ratio {ratios['points_4096_from_scratch']} (4096 from scratch) vs "
              f"{ratios['points_2048']} (2048); 4096 from scratch peaks at HSS {baseline['ablation_4096_scratch_peak_hss']}",
              (Part("4096 from scratch overfits more", "ablation_4096_scratch", "stage1", "ratio"),
               Part("2048 first generalises better", "stage2", "ablation_4096_scratch", "peak hss")),
              "stage 1 overfits measurably (its val/train loss ratio above 1 over the seeds)",
              overfits("stage1", passes_per_scene(evidence, "stage1", recipes["stage1"]), seed_passes())),
        Claim(2, "the 4096-point finetune makes HSS jump", f"HSS {s1['hss']} -> {s2['hss']}",
              (Part("denser points", "stage2", "control_points", "hss"),
               Part("the finetune's LR drop, batch and steps", "control_points", "stage1", "hss", decides=False),
               Part("the whole jump", "stage2", "stage1", "hss", decides=False)),
              "stage 1 scores at the threshold", scores_at_all("stage1")),
        Claim(3, "a gentle finetune LR preserves what stage 1 learnt; a high one forgets",
              f"forgetting above LR {baseline['high_finetune_lr_threshold']:g}",
              (Part("the gentle LR stays above stage 1", "stage2", "stage1", "lowest hss", decides=False, metric_b="hss"),
               *(p for arm in high_arms for p in (
                   Part(f"the gentle LR keeps more than {arm.split()[-1]}", "stage2", arm, "hss"),
                   Part(f"{arm.split()[-1]} falls below stage 1", "stage1", arm, "hss", metric_b="lowest hss")))),
              "stage 1 scores at the threshold and no high-LR run diverged",
              lambda ev: _all(scores_at_all("stage1")(ev), *(did_not_diverge(a, "stage1")(ev) for a in high_arms))),
        Claim(4, "the endpoint loss in the cooldown tightens vertices, raising corner F1",
              f"HSS {s2['hss']} -> {s3['hss']}, F1 {s3['f1']} after stage 3 (its F1 after stage 2 does not fit its "
              "HSS and is not used)",
              (Part("the endpoint term", "stage3", "control_endpoint", "f1"),
               Part("the whole stage 3 (endpoint, cooldown, steps)", "stage3", "stage2", "f1", decides=False)),
              "stage 2 scores at the threshold", scores_at_all("stage2", "f1")),
    ]


def _all(*checks):
    """Several conditions as one: met when all are, with every reason."""
    return all(met for met, _ in checks), "; ".join(reason for _, reason in checks)


def arm_params(recipes, arm):
    """The params of the first run of `arm` (a stage, or `<stage> lr=<LR>`)."""
    stage, _, lr = arm.partition(" lr=")
    runs = stage_runs(recipes[stage], ".")
    return next(r for r, _ in runs if not lr or f"{r['schedule']['lr']:g}" == lr)


def reproducibility(record):
    """Claim 5's verdict and evidence from the reproducibility notebook's record (a JSON file):
    two deterministic runs and a half run resumed, compared tensor by tensor."""
    if not record.is_file():
        return verdicts.INCONCLUSIVE, "not measured: run the reproducibility notebook first"
    repro = json.loads(record.read_text())
    same = repro["deterministic"] == "bit-identical" and repro["resume"] == "bit-identical"
    return (verdicts.REPRODUCED if same else verdicts.NOT_REPRODUCED,
            f"two deterministic runs: {repro['deterministic']}; half + resume: {repro['resume']} "
            f"(smoke-sized runs on {repro['device']}; the seed's CUDA mode is tests/test_cuda.py's, where a GPU is)")
