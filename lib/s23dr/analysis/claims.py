"""The seed's claims as data: the runs each compares, the metric, the condition under which
its test means something (the book, Results: the verdicts); `ruling` turns them into verdicts.

A claim has *parts*: each a difference "arm A minus arm B" of one metric, read seed by seed
(`verdicts.seed_interval`) at each run's final evaluation. A decisive part is a sub-claim: one
sentence of the seed, quoted, tested as written (`verdicts`: an effect that matters, a share
of a gain, a loss beyond Δ or its absence) on two arms that differ in one thing (a control:
`evidence.changed_keys` lists what differs, from the params). A part shown beside it splits
the rest of a difference with several causes. The evidence is the runs' metrics logs and
final checkpoints scored at the other point count (`evidence`, `point_counts`).
"""

import json
from dataclasses import dataclass, field
from typing import Callable

from . import verdicts
from .evidence import at_points, passes_per_scene, seed_passes, value
from ..config import load_params
from ..experiments import main_chain, stage_files, stage_runs

@dataclass(frozen=True)
class Part:
    """metric(a) - metric_b(b) per training seed (metric_b is metric unless named). Metrics: an
    evaluation's hss, f1, iou or ratio (val over train loss) at a run's final evaluation, or
    `peak hss` (its best). A part that decides is a sub-claim (`key`, e.g. "2b") testing the
    seed's `words` by its `test` (`verdicts`: exists, share, beyond or within); a share part also
    names the `whole` difference (a, b) it is a share of."""
    name: str
    a: str
    b: str
    metric: str
    decides: bool = True
    metric_b: str = None
    test: str = "exists"
    whole: tuple = None
    key: str = ""
    words: str = ""
    differs: str = ""  # what tells the arms apart, where they are not two recipes (`changed_keys`)
    cause: str = ""    # in a stage's gain split by cause (`gain_split`): the cause this part measures, or "whole"

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


def scores_at_all(arm, metric="hss"):
    """A condition: every seed of `arm` scores above zero (a run whose every confidence stays
    below the threshold scores 0 and can show no difference)."""
    def check(evidence):
        finals = {s: value(rows, metric) for s, rows in evidence.get(arm, {}).items()}
        met = bool(finals) and all(v > 0 for v in finals.values())
        return met, f"{arm}'s final {metric} per seed: " + ", ".join(f"{v:.3f}" for v in finals.values())
    return check


def overfits(arms, passes, seed_passes):
    """Claim 1's condition: some arm of `arms` ends with a val/train loss ratio above 1 by more
    than its interval over seeds, i.e. overfits measurably; `passes` is how often claim 1's
    arms saw each training scene, `seed_passes` how often the seed's stage 1 did."""
    def check(evidence):
        found, texts = False, []
        for arm in arms:
            ratios = [value(rows, "ratio") for rows in evidence.get(arm, {}).values()]
            mean, low, high = verdicts.seed_interval(ratios)
            met = len(ratios) >= verdicts.MIN_SEEDS and low > 1
            found |= met
            texts.append(f"{arm}'s val/train loss ratio {mean:.3f} [{low:.3f}, {high:.3f}] over {len(ratios)} seeds "
                         f"{'is' if met else 'is not'} above 1")
        return found, ("; ".join(texts) + f"; each arm saw each training scene {passes:.0f} times "
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


def high_lr_arms(recipes):
    """The arms of the high-LR ablation, one per LR of its sweep."""
    return list(high_lr_rates(recipes))


def high_lr_rates(recipes):
    """{arm: its LR at the seed's scale} of the high-LR ablation (the profile scales every LR
    alike: `profiles.yaml`), so that each is read against the seed's threshold."""
    ablation, full = recipes["ablation_high_lr"], load_params(stage_files()["ablation_high_lr"])
    scale = ablation["schedule"]["lr"] / full["schedule"]["lr"]
    return {run.arm: run.lr / scale for run in stage_runs(ablation, ".") if run.seed == ablation["train"]["seed"]}


def finetune_parts(arm, lr, threshold, dense, letters):
    """Claim 3's sub-claims on one high-LR arm: above the seed's threshold, the gentle LR keeps
    more and the arm falls below its start by more than Δ; at or below it, the arm stays within
    Δ of its start (the threshold's other side: an equivalence bound)."""
    start = at_points("stage1", dense)
    differs = f"the arms are the model the {arm} run started from and that run, both scored at {dense} points"
    forgets = "LR > 1e-4 causes catastrophic forgetting of the 2048 geometry understanding"  # the seed's words
    if lr > threshold:
        return (Part(f"the gentle LR keeps more than {arm.split()[-1]}", "stage2", arm, "hss", key=f"3{next(letters)}",
                     words="The gentle lr (3e-5) preserves learned representations"),
                Part(f"{arm.split()[-1]} falls below its start by more than Δ", start, arm, "hss", test="beyond",
                     key=f"3{next(letters)}", words=forgets, differs=differs))
    return (Part(f"{arm.split()[-1]}, under the threshold, stays within Δ of its start", start, arm, "hss",
                 test="within", key=f"3{next(letters)}", words=forgets, differs=differs),)


def claims(recipes, baseline, evidence, rules):
    """The seed's claims 1-4 wired to this book's arms, each sentence of the seed a sub-claim:
    `recipes` {stage: params} at the profile, `baseline` the seed's figures
    (params/baseline_results.yaml), `rules` params/verdicts.yaml. The evidence holds every
    run's metrics log and the final checkpoints of stages 1 to 3 and the points control scored
    at the other point count too (`at_points`)."""
    s1, s2, s3 = (baseline["stages"][s] for s in main_chain())
    ratios, share = baseline["train_val_ratio"], rules["share"]
    sparse, dense = recipes["stage1"]["data"]["points"], recipes["stage2"]["data"]["points"]
    high_rates, threshold = high_lr_rates(recipes), baseline["high_finetune_lr_threshold"]
    letters = iter("abcdefghij")
    return [
        Claim(1, "2048 points first generalises better than 4096 from scratch, which overfits",
              f"train/val ratio {ratios['points_4096_from_scratch']} (4096 from scratch) vs "
              f"{ratios['points_2048']} (2048); 4096 from scratch peaks at HSS {baseline['ablation_4096_scratch_peak_hss']}",
              (Part("4096 from scratch overfits more", "ablation_4096_scratch", "control_2048_scratch", "ratio", key="1a",
                    words="training directly on 4096 overfits (1.47x train/val ratio vs 1.19x for 2048)"),
               Part("2048 first generalises better", "control_2048_then_4096", "ablation_4096_scratch", "peak hss",
                    key="1b", words="Starting on 2048 produces better-generalized representations")),
              "the 2048- or the 4096-point arm from scratch overfits measurably (its val/train loss ratio above 1 over "
              "the seeds)",
              overfits(("control_2048_scratch", "ablation_4096_scratch"),
                       passes_per_scene(evidence, "control_2048_scratch", recipes["control_2048_scratch"]),
                       seed_passes())),
        Claim(2, "the 4096-point finetune makes HSS jump, and the jump is the denser points'",
              f"HSS {s1['hss']} -> {s2['hss']}, \"what changed: +74% coverage from 4096 pts\"",
              (Part("denser points help", "stage2", "control_points", "hss", key="2a",
                    words="+74% coverage from 4096 pts", cause="denser points"),
               Part(f"the jump is the denser points' (at least {share:g} of it)", "stage2", "control_points", "hss",
                    test="share", whole=("stage2", "stage1"), key="2b",
                    words="The stage 1 -> stage 2 jump ... is the biggest single improvement and motivates the "
                          "2048 -> 4096 transfer"),
               Part("the whole jump", "stage2", "stage1", "hss", decides=False, cause="whole"),
               Part("the finetune's LR drop, batch and steps", "control_points", "stage1", "hss", decides=False,
                    cause="the LR drop, batch and steps"),
               Part(f"denser input at inference (stage 2 scored at {dense} and at {sparse} points)",
                    "stage2", at_points("stage2", sparse), "hss", decides=False),
               Part(f"training on denser points (both scored at {sparse} points)",
                    at_points("stage2", sparse), "control_points", "hss", decides=False),
               Part(f"stage 1 at its own {sparse} points against {dense}", "stage1", at_points("stage1", dense), "hss",
                    decides=False)),
              "stage 1 scores at the threshold", scores_at_all("stage1")),
        Claim(3, "a gentle finetune LR preserves what stage 1 learnt; a high one forgets",
              f"forgetting above LR {baseline['high_finetune_lr_threshold']:g}",
              (Part(f"the gentle LR stays at its start (stage 1 scored at {dense} points)", "stage2",
                    at_points("stage1", dense), "hss", decides=False),
               *(p for arm, lr in high_rates.items() for p in finetune_parts(arm, lr, threshold, dense, letters))),
              "stage 1 scores at the threshold and no high-LR run diverged",
              lambda ev: _all(scores_at_all("stage1")(ev), *(did_not_diverge(a, "stage1")(ev) for a in high_rates))),
        Claim(4, "the endpoint loss in the cooldown tightens vertices, raising corner F1",
              f"HSS {s2['hss']} -> {s3['hss']}, F1 {s3['f1']} after stage 3 (its F1 after stage 2 does not fit its "
              "HSS and is not used); \"what changed: vertex precision from endpoint loss\"",
              (Part("the endpoint term raises F1", "stage3", "control_endpoint", "f1", key="4a",
                    words="Adding a symmetric endpoint L1 ... tightens vertex precision in the cooldown",
                    cause="the endpoint term"),
               Part(f"stage 3's F1 gain is the endpoint term's (at least {share:g} of it)", "stage3",
                    "control_endpoint", "f1", test="share", whole=("stage3", "stage2"), key="4b",
                    words="Vertex precision from endpoint loss"),
               Part("the whole stage 3 (endpoint, cooldown, steps)", "stage3", "stage2", "f1", decides=False,
                    cause="whole")),
              "stage 2 scores at the threshold", scores_at_all("stage2", "f1")),
    ]


def _all(*checks):
    """Several conditions as one: met when all are, with every reason."""
    return all(met for met, _ in checks), "; ".join(reason for _, reason in checks)


#: What the reproducibility notebook records for claim 5 (`reproducibility.record`).
RECORDED = {"device", "deterministic", "resume", "stage", "stage_hss", "within_hss", "within"}


def reproducibility(record):
    """Claim 5's label and sub-claims from the reproducibility notebook's record (a JSON file):
    (label, {key: (the seed's words, what we tested, label, evidence)}). 5a: smoke-sized deterministic runs, a
    half run resumed and a real stage of the profile trained twice, tensor by tensor; 5b: that
    stage's two final HSS as close as the seed's two stage-3 runs from one stage-2 checkpoint."""
    words = {"5a": "Deterministic mode, 3 independent runs: bit-identical (162 tensors, max_diff=0.0)",
             "5b": "Step 3 from orig Step 2 (run A) 0.382, (run B) 0.384"}
    if not record.is_file():
        return verdicts.INCONCLUSIVE, {key: (text, "—", verdicts.INCONCLUSIVE, "not measured: run the "
                                             "reproducibility notebook first") for key, text in words.items()}
    repro = json.loads(record.read_text())
    missing = RECORDED - repro.keys()
    if missing:
        return verdicts.INCONCLUSIVE, {key: (text, "—", verdicts.INCONCLUSIVE, f"{record} lacks {', '.join(sorted(missing))}: "
                                             "run the reproducibility notebook again") for key, text in words.items()}
    same = all(repro[k] == "bit-identical" for k in ("deterministic", "resume", "stage"))
    a, b = repro["stage_hss"]
    parts = {
        "5a": (words["5a"], "two deterministic smoke runs, a half run resumed, and stage 3 trained twice from one "
               "stage-2 checkpoint, tensor by tensor", verdicts.REPRODUCED if same else verdicts.NOT_REPRODUCED,
               f"smoke runs: {repro['deterministic']}; half + resume: {repro['resume']}; stage 3 twice: "
               f"{repro['stage']} (on {repro['device']}; the seed's CUDA mode is tests/test_cuda.py's, where a GPU is)"),
        "5b": (words["5b"], f"stage 3 trained twice from one stage-2 checkpoint: final HSS within {repro['within_hss']:.3f}",
               verdicts.REPRODUCED if repro["within"] else verdicts.NOT_REPRODUCED,
               f"final HSS {a:.4f} and {b:.4f}, {abs(a - b):.4f} apart")}
    return verdicts.combine(*(label for _, _, label, _ in parts.values())), parts
