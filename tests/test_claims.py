"""Each claim's wiring: which arms, which metric and which condition its verdict reads, on
constructed metrics logs whose outcome is known. Swapping an arm or a metric turns a test red."""

from pathlib import Path

import pytest

from s23dr.analysis import claims
from s23dr.experiments import stage_params
from s23dr.analysis.report import baseline_results
from s23dr.analysis.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3)
BASE = {"hss": 0.3, "f1": 0.4, "iou": 0.2, "ratio": 1.0}


def run(seed, evals=None, train=(1.0, 0.9), scenes=4, train_scenes=2000):
    """A metrics log: a run row, training rows with these losses, evaluations {metric: value}."""
    rows = [{"step": 0, "kind": "run", "train_scenes": train_scenes}]
    rows += [{"step": i + 1, "kind": "train", "total": t} for i, t in enumerate(train)]
    for i, ev in enumerate(evals or [{}]):
        ev = {**BASE, **ev}
        scene_scores = {f"s{k}": [ev["hss"] + 0.01 * ((k + seed) % 3), ev["f1"], ev["iou"]] for k in range(scenes)}
        rows.append({"step": 10 * (i + 1), "kind": "eval", **ev, "scenes": scene_scores})
    return rows


@pytest.fixture(scope="module")
def recipes():
    import os
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return stage_params("cpu")
    finally:
        os.chdir(cwd)


@pytest.fixture
def world(recipes, monkeypatch):
    """Every arm of every claim at BASE for every seed; a test changes what it needs."""
    monkeypatch.chdir(ROOT)
    high = [f"ablation_high_lr lr={lr:g}" for lr in recipes["ablation_high_lr"]["sweep_lr"]]
    arms = ["stage1", "stage2", "stage3", "control_points", "control_endpoint", "ablation_4096_scratch", *high]
    evidence = {arm: {s: run(s) for s in SEEDS} for arm in arms}
    return evidence, high


def verdict(recipes, evidence, number):
    claim = next(c for c in claims.claims(recipes, baseline_results(), evidence) if c.number == number)
    return claims.rule(claim, evidence)


def shift(evidence, arm, metric, by, seeds=SEEDS, at=-1):
    for s in seeds:
        ev = [r for r in evidence[arm][s] if r["kind"] == "eval"][at]
        ev[metric] += by if not callable(by) else by(s)


def test_claim2_reads_stage2_minus_the_points_control(recipes, world):
    evidence, _ = world
    shift(evidence, "stage2", "hss", 0.1)
    label, parts, met, _ = verdict(recipes, evidence, 2)
    assert met and label == REPRODUCED
    decisive = [p for p in parts if p["decides"]]
    assert [(p["a"], p["b"], p["metric"]) for p in decisive] == [("stage2", "control_points", "hss")]
    # a jump made by the LR drop alone (the control scores as stage 2) is not the points'
    shift(evidence, "control_points", "hss", 0.1)
    assert verdict(recipes, evidence, 2)[0] == INCONCLUSIVE
    shift(evidence, "control_points", "hss", 0.1)
    assert verdict(recipes, evidence, 2)[0] == NOT_REPRODUCED


def test_claim2_needs_stage1_to_score(recipes, world):
    evidence, _ = world
    shift(evidence, "stage1", "hss", -0.3)
    assert verdict(recipes, evidence, 2)[0] == NOT_TESTABLE


def test_claim4_reads_f1_of_stage3_minus_the_endpoint_control(recipes, world):
    evidence, _ = world
    shift(evidence, "stage3", "f1", 0.05)
    assert verdict(recipes, evidence, 4)[0] == REPRODUCED
    shift(evidence, "stage3", "hss", -0.2)  # HSS is not the claim's metric
    assert verdict(recipes, evidence, 4)[0] == REPRODUCED
    shift(evidence, "stage2", "f1", 1.0)    # stage 2 is shown beside, not read
    assert verdict(recipes, evidence, 4)[0] == REPRODUCED
    shift(evidence, "control_endpoint", "f1", 0.05)
    assert verdict(recipes, evidence, 4)[0] == INCONCLUSIVE


def test_claim3_reads_stage2_and_stage1_against_the_high_lr_arm(recipes, world):
    evidence, high = world
    for arm in high:
        shift(evidence, arm, "hss", -0.1)
    label, parts, met, _ = verdict(recipes, evidence, 3)
    assert met and label == REPRODUCED
    assert {(p["a"], p["b"], p["metric"], p["metric_b"]) for p in parts if p["decides"]} == {
        pair for arm in high for pair in (("stage2", arm, "hss", "hss"), ("stage1", arm, "hss", "lowest hss"))}
    shown = [p for p in parts if not p["decides"]]
    assert [(p["a"], p["b"], p["metric"], p["metric_b"]) for p in shown] == [("stage2", "stage1", "lowest hss", "hss")]
    shift(evidence, "stage1", "hss", -0.15)  # the high-LR arm stays above stage 1: no forgetting
    assert verdict(recipes, evidence, 3)[0] == NOT_REPRODUCED


def test_claim3_compares_stage1s_end_with_the_high_lr_runs_worst_evaluation(recipes, world):
    """Forgetting as the seed means it: a high-LR run that dips below stage 1's final score and
    recovers forgets, although it ends level; stage 1's own early (low) evaluations do not count."""
    evidence, high = world
    for arm in high:
        for s in SEEDS:
            evidence[arm][s] = run(s, [{"hss": 0.1 + 0.01 * s}, {"hss": 0.3}])  # dips, then recovers
    for s in SEEDS:
        evidence["stage1"][s] = run(s, [{"hss": 0.0}, {"hss": 0.3}])  # learnt from nothing
        evidence["stage2"][s] = run(s, [{"hss": 0.35}, {"hss": 0.4 + 0.01 * s}])
    label, parts, met, _ = verdict(recipes, evidence, 3)
    below = next(p for p in parts if p["part"].endswith("falls below stage 1"))
    assert below["label"] == REPRODUCED and below["mean"] == pytest.approx(0.18)
    assert met and label == REPRODUCED


def test_claim3_is_not_testable_when_the_high_lr_run_diverged(recipes, world):
    evidence, high = world
    for arm in high:
        shift(evidence, arm, "hss", -0.1)
        evidence[arm][2] = run(2, [{"hss": 0.2}], train=(0.9, 1.5, 0.5))  # rises above the untrained model's 1.0
    label, _, met, reason = verdict(recipes, evidence, 3)
    assert label == NOT_TESTABLE and not met and "diverged" in reason


def test_claim1_is_tested_only_where_stage1_overfits(recipes, world):
    evidence, _ = world
    shift(evidence, "ablation_4096_scratch", "ratio", 0.3)
    shift(evidence, "ablation_4096_scratch", "hss", -0.1)
    label, _, met, reason = verdict(recipes, evidence, 1)  # stage 1's ratio is 1.0 on every seed
    assert label == NOT_TESTABLE and not met and "times" in reason
    shift(evidence, "stage1", "ratio", lambda s: 0.2 + 0.01 * s)
    label, parts, met, _ = verdict(recipes, evidence, 1)
    assert met and label == REPRODUCED
    assert {(p["a"], p["b"], p["metric"]) for p in parts} == {
        ("ablation_4096_scratch", "stage1", "ratio"), ("stage2", "ablation_4096_scratch", "peak hss")}


def test_peak_and_lowest_read_the_best_and_worst_evaluation():
    rows = run(1, [{"hss": 0.1}, {"hss": 0.5}, {"hss": 0.3}])
    assert claims.value(rows, "peak hss") == 0.5 and claims.value(rows, "lowest hss") == 0.1
    assert claims.value(rows, "hss") == 0.3


def test_a_control_changes_one_recipe_key(recipes):
    assert claims.changed_keys(recipes["stage2"], recipes["control_points"]) == ["data.points"]
    assert claims.changed_keys(recipes["stage3"], recipes["control_endpoint"]) == ["loss.endpoint.weight"]
    assert claims.changed_keys(recipes["stage2"], claims.arm_params(recipes, "ablation_high_lr lr=%g" % (
        recipes["ablation_high_lr"]["sweep_lr"][0]))) == ["schedule.lr"]


def test_claim3_a_loss_a_little_above_stage1s_last_is_no_divergence(recipes, world):
    evidence, high = world
    for arm in high:
        shift(evidence, arm, "hss", -0.1)
        evidence[arm][2] = run(2, [{"hss": 0.2}], train=(0.9, 0.95))  # above stage 1's last 0.9, below 1.0
    assert verdict(recipes, evidence, 3)[2]
