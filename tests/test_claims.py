"""Each claim's wiring: which arms, which metric and which condition its verdict reads, on
constructed metrics logs whose outcome is known. Swapping an arm or a metric turns a test red."""

import json
from pathlib import Path

import pytest

from s23dr.analysis import claims, evidence as ev, ruling
from s23dr.experiments import stage_params
from s23dr.analysis.notebook import baseline_results
from s23dr.analysis.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED
from s23dr.rundir import MetricsLog

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3)
BASE = {"hss": 0.3, "f1": 0.4, "iou": 0.2, "ratio": 1.0}


def run(seed, evals=None, train=(1.0, 0.9), scenes=4, train_scenes=2000):
    """A metrics log: a run row, training rows with these losses, evaluations {metric: value}."""
    rows = [{"step": 0, "kind": "run", "train_scenes": train_scenes}]
    rows += [{"step": i + 1, "kind": "train", "total": t} for i, t in enumerate(train)]
    for i, scores in enumerate(evals or [{}]):
        scores = {**BASE, **scores}
        scene_scores = {f"s{k}": [scores["hss"] + 0.01 * ((k + seed) % 3), scores["f1"], scores["iou"]] for k in range(scenes)}
        rows.append({"step": 10 * (i + 1), "kind": "eval", **scores, "scenes": scene_scores})
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
    sparse, dense = recipes["stage1"]["data"]["points"], recipes["stage2"]["data"]["points"]
    rescored = [ev.at_points("stage1", dense), ev.at_points("stage2", sparse)]
    arms = ["stage1", "stage2", "stage3", "control_points", "control_endpoint", "control_2048_scratch",
            "control_2048_then_4096", "ablation_4096_scratch", *high, *rescored]
    evidence = {arm: {s: run(s) for s in SEEDS} for arm in arms}
    return evidence, high


def verdict(recipes, evidence, number):
    rules = ruling.rules(ROOT / ruling.RULES)
    claim = next(c for c in claims.claims(recipes, baseline_results(), evidence, rules) if c.number == number)
    return ruling.rule(claim, evidence, rules)


def sub(parts, key):
    """A sub-claim's label."""
    return next(p["label"] for p in parts if p["key"] == key)


def shift(evidence, arm, metric, by, seeds=SEEDS, at=-1):
    for s in seeds:
        row = MetricsLog.evals(evidence[arm][s])[at]
        row[metric] += by if not callable(by) else by(s)


def test_claim2_reads_stage2_minus_the_points_control(recipes, world):
    evidence, _ = world
    shift(evidence, "stage2", "hss", lambda s: 0.1 + 0.01 * s)
    label, parts, met, _ = verdict(recipes, evidence, 2)
    assert met and label == REPRODUCED
    decisive = [p for p in parts if p["decides"]]
    assert [(p["key"], p["a"], p["b"], p["metric"], p["test"]) for p in decisive] == [
        ("2a", "stage2", "control_points", "hss", "exists"), ("2b", "stage2", "control_points", "hss", "share")]
    # a jump made by the LR drop alone (the control scores as stage 2) is not the points'
    shift(evidence, "control_points", "hss", lambda s: 0.1 + 0.01 * s + 0.001 * (s % 2))
    label, parts, _, _ = verdict(recipes, evidence, 2)
    assert sub(parts, "2a") == NOT_REPRODUCED and sub(parts, "2b") == NOT_REPRODUCED  # no effect of interest
    assert label == NOT_REPRODUCED


def test_claim2_attribution_needs_the_points_to_carry_half_the_jump(recipes, world):
    """Denser points that help, but carry a fifth of the jump: 2a reproduced, 2b not."""
    evidence, _ = world
    shift(evidence, "stage2", "hss", lambda s: 0.20 + 0.01 * s)
    shift(evidence, "control_points", "hss", lambda s: 0.16 + 0.01 * (s % 2))
    label, parts, _, _ = verdict(recipes, evidence, 2)
    assert sub(parts, "2a") == REPRODUCED and sub(parts, "2b") == NOT_REPRODUCED and label == NOT_REPRODUCED
    share = next(p for p in parts if p["key"] == "2b")["share"]
    assert share[0] == pytest.approx((0.04 + 0.06 + 0.06) / (0.21 + 0.22 + 0.23)) and share[1] < share[0] < share[2]


def test_claim2_needs_stage1_to_score(recipes, world):
    evidence, _ = world
    shift(evidence, "stage1", "hss", -0.3)
    label, parts, _, _ = verdict(recipes, evidence, 2)
    assert label == NOT_TESTABLE and {p["label"] for p in parts if p["decides"]} == {NOT_TESTABLE}


def test_claim4_reads_f1_of_stage3_minus_the_endpoint_control(recipes, world):
    evidence, _ = world
    shift(evidence, "stage3", "f1", lambda s: 0.05 + 0.002 * s)
    label, parts, _, _ = verdict(recipes, evidence, 4)
    assert sub(parts, "4a") == REPRODUCED and sub(parts, "4b") == REPRODUCED  # the whole gain is the endpoint's
    shift(evidence, "stage3", "hss", -0.2)  # HSS is not the claim's metric
    assert verdict(recipes, evidence, 4)[0] == REPRODUCED
    shift(evidence, "stage2", "f1", -0.2)    # a big stage-3 gain of which the endpoint carries little
    label, parts, _, _ = verdict(recipes, evidence, 4)
    assert sub(parts, "4a") == REPRODUCED and sub(parts, "4b") == NOT_REPRODUCED
    shift(evidence, "control_endpoint", "f1", lambda s: 0.05 + 0.002 * s)
    assert sub(verdict(recipes, evidence, 4)[1], "4a") == NOT_REPRODUCED  # equal arms: no effect of interest


def above_and_below(recipes):
    """The high-LR arms above the seed's threshold and those at or below it."""
    rates, threshold = claims.high_lr_rates(recipes), baseline_results()["high_finetune_lr_threshold"]
    return [a for a, lr in rates.items() if lr > threshold], [a for a, lr in rates.items() if lr <= threshold]


def test_the_high_lr_arms_span_the_seeds_threshold(recipes):
    above, below = above_and_below(recipes)
    assert above and below


def test_claim3_reads_stage2_and_the_start_against_the_high_lr_arms(recipes, world):
    """Above the threshold: the gentle LR keeps more, and the arm falls beyond Δ; below it, the
    arm stays within Δ of its start."""
    evidence, _ = world
    above, below = above_and_below(recipes)
    for arm in above:
        shift(evidence, arm, "hss", lambda s: -0.1 - 0.01 * s)
    for arm in below:
        shift(evidence, arm, "hss", lambda s: -0.001 * s)
    label, parts, met, _ = verdict(recipes, evidence, 3)
    assert met and label == REPRODUCED
    dense = recipes["stage2"]["data"]["points"]
    start = ev.at_points("stage1", dense)
    assert {(p["a"], p["b"], p["test"]) for p in parts if p["decides"]} == {
        *(pair for arm in above for pair in (("stage2", arm, "exists"), (start, arm, "beyond"))),
        *((start, arm, "within") for arm in below)}
    assert [p["key"] for p in parts if p["decides"]] == ["3a", "3b", "3c"]
    shown = [p for p in parts if not p["decides"]]
    assert [(p["a"], p["b"]) for p in shown] == [("stage2", start)]
    for arm in below:  # an LR under the threshold that forgets contradicts the threshold
        shift(evidence, arm, "hss", -0.1)
    label, parts, _, _ = verdict(recipes, evidence, 3)
    assert label == NOT_REPRODUCED and sub(parts, "3c") == NOT_REPRODUCED


def test_claim3_forgetting_is_a_fall_from_the_start_beyond_delta(recipes, world):
    """The high-LR run against the model it started from, scored at the same point count: a fall
    inside Δ is no catastrophic forgetting, whatever stage 1 scored at its own point count."""
    evidence, high = world
    for arm in high:
        shift(evidence, arm, "hss", lambda s: -0.005 - 0.001 * s)
    shift(evidence, "stage1", "hss", 0.2)  # stage 1 at its own point count is not the start
    _, parts, _, _ = verdict(recipes, evidence, 3)
    falls = [p for p in parts if p["test"] == "beyond"]
    assert falls and all(p["label"] == NOT_REPRODUCED for p in falls)
    assert all(p["label"] == REPRODUCED for p in parts if p["test"] == "within")


def test_claim3_is_not_testable_when_the_high_lr_run_diverged(recipes, world):
    evidence, high = world
    for arm in high:
        shift(evidence, arm, "hss", -0.1)
        evidence[arm][2] = run(2, [{"hss": 0.2}], train=(0.9, 1.5, 0.5))  # rises above the untrained model's 1.0
    label, _, met, reason = verdict(recipes, evidence, 3)
    assert label == NOT_TESTABLE and not met and "diverged" in reason


def test_claim1_is_tested_only_where_an_arm_from_scratch_overfits(recipes, world):
    evidence, _ = world
    shift(evidence, "ablation_4096_scratch", "hss", -0.1)
    label, _, met, reason = verdict(recipes, evidence, 1)  # no arm's ratio is above 1 over its seeds
    assert label == NOT_TESTABLE and not met and "times" in reason
    shift(evidence, "ablation_4096_scratch", "ratio", lambda s: 0.3 + 0.01 * s)  # only the denser arm overfits
    assert verdict(recipes, evidence, 1)[2]
    shift(evidence, "control_2048_scratch", "ratio", lambda s: 0.05 + 0.01 * s)
    label, parts, met, _ = verdict(recipes, evidence, 1)
    assert met and label == REPRODUCED
    assert {(p["a"], p["b"], p["metric"]) for p in parts} == {
        ("ablation_4096_scratch", "control_2048_scratch", "ratio"),
        ("control_2048_then_4096", "ablation_4096_scratch", "peak hss")}


def test_claim1s_arms_differ_in_the_point_count_and_train_where_stage1_overfits(recipes):
    """The control arm is stage 1's recipe on claim 1's training scenes, and the ablation differs
    from it in the point count alone; both see each scene far more often than stage 1 does."""
    control, ablation = recipes["control_2048_scratch"], recipes["ablation_4096_scratch"]
    assert ev.changed_keys(control, ablation) == ["data.points"]
    assert ev.changed_keys(recipes["stage1"], control) == ["data.synthetic.root", "data.synthetic.train"]
    then = recipes["control_2048_then_4096"]
    assert then["init_from"] == "control_2048_scratch" and ev.changed_keys(recipes["stage2"], then) == [
        "data.synthetic.root", "data.synthetic.train"]
    assert ev.passes(control, control["data"]["synthetic"]["train"]) > 20 * ev.passes(
        recipes["stage1"], recipes["stage1"]["data"]["synthetic"]["train"])


def test_peak_and_lowest_read_the_best_and_worst_evaluation():
    rows = run(1, [{"hss": 0.1}, {"hss": 0.5}, {"hss": 0.3}])
    assert ev.value(rows, "peak hss") == 0.5 and ev.value(rows, "lowest hss") == 0.1
    assert ev.value(rows, "hss") == 0.3


def test_a_control_changes_one_recipe_key(recipes):
    assert ev.changed_keys(recipes["stage2"], recipes["control_points"]) == ["data.points"]
    assert ev.changed_keys(recipes["stage3"], recipes["control_endpoint"]) == ["loss.endpoint.weight"]
    assert ev.changed_keys(recipes["stage2"], ev.arm_params(recipes, "ablation_high_lr lr=%g" % (
        recipes["ablation_high_lr"]["sweep_lr"][0]))) == ["schedule.lr"]


def test_claim3_a_loss_a_little_above_stage1s_last_is_no_divergence(recipes, world):
    evidence, high = world
    for arm in high:
        shift(evidence, arm, "hss", -0.1)
        evidence[arm][2] = run(2, [{"hss": 0.2}], train=(0.9, 0.95))  # above stage 1's last 0.9, below 1.0
    assert verdict(recipes, evidence, 3)[2]


def test_the_smallest_effect_is_half_the_seeds_compiled_spread():
    """Δ of params/verdicts.yaml is derived from the seed's figures, not chosen after the runs."""
    low, high = baseline_results(ROOT / "params/baseline_results.yaml")["compiled_e2e_hss_range"]
    rules = ruling.rules(ROOT / ruling.RULES)
    assert rules["smallest_effect"]["hss"] == pytest.approx((high - low) / 2)
    assert rules["smallest_effect"]["f1"] == rules["smallest_effect"]["hss"]


def test_claim5_reads_the_stage_trained_twice(tmp_path):
    record = tmp_path / "reproducibility.json"
    assert claims.reproducibility(record)[0] == INCONCLUSIVE
    checks = {"device": "cpu", "deterministic": "bit-identical", "resume": "bit-identical", "stage": "bit-identical"}
    record.write_text(json.dumps({**checks, "stage_hss": [0.40, 0.4015], "within_hss": 0.002, "within": True}))
    label, parts = claims.reproducibility(record)
    assert label == REPRODUCED and [parts[k][2] for k in ("5a", "5b")] == [REPRODUCED, REPRODUCED]
    record.write_text(json.dumps({**checks, "stage": "not bit-identical", "stage_hss": [0.40, 0.41], "within_hss": 0.002, "within": False}))
    label, parts = claims.reproducibility(record)
    assert label == NOT_REPRODUCED and [parts[k][2] for k in ("5a", "5b")] == [NOT_REPRODUCED, NOT_REPRODUCED]
    record.write_text(json.dumps(checks))  # recorded by an older version: read again, not guessed
    label, parts = claims.reproducibility(record)
    assert label == INCONCLUSIVE and "run the reproducibility notebook again" in parts["5b"][3]
