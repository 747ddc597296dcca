"""The matcher (segment cost, dustbin Sinkhorn) and the criterion built on it."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from s23dr.losses import Criterion, endpoint_distance
from s23dr.matcher import matched_mass_at_cost, segment_cost, sinkhorn
from s23dr.schema import MAX_GT_EDGES

LOSS = yaml.safe_load((Path(__file__).parents[1] / "params" / "base.yaml").read_text())["loss"]
WITH_ENDPOINT = {**LOSS, "endpoint": {"weight": 0.1}}
P = 64  # predictions per scene


def scenes(n_gt=(5, 1, 0, 64), seed=0):
    """GT for one scene per entry of n_gt (zero-padded to MAX_GT_EDGES) and a perfect prediction:
    the GT segments in the first queries, the rest far away (midpoints at ~3, beyond any match)."""
    g = torch.Generator().manual_seed(seed)
    B = len(n_gt)
    gt = torch.zeros(B, MAX_GT_EDGES, 2, 3)
    mask = torch.zeros(B, MAX_GT_EDGES, dtype=torch.bool)
    pred = 3 + 0.2 * torch.rand(B, P, 2, 3, generator=g)
    for b, n in enumerate(n_gt):
        gt[b, :n] = torch.rand(n, 2, 3, generator=g) - 0.5
        mask[b, :n] = True
        pred[b, :n] = gt[b, :n]
    batch = {"gt_segments": gt, "gt_mask": mask}
    outputs = {"segments": pred, "conf_logits": torch.randn(B, P, generator=g)}
    return outputs, batch


def random_outputs(B, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"segments": (torch.rand(B, P, 2, 3, generator=g) - 0.5).requires_grad_(),
            "conf_logits": torch.randn(B, P, generator=g).requires_grad_()}


def test_cost_is_zero_on_the_diagonal_and_ignores_orientation():
    _, batch = scenes()
    gt = batch["gt_segments"][:1, :5]
    assert segment_cost(gt, gt).diagonal(dim1=1, dim2=2).abs().max() < 1e-6
    pred = torch.rand(1, 7, 2, 3)
    torch.testing.assert_close(segment_cost(pred.flip(-2), gt.flip(-2)), segment_cost(pred, gt))
    shifted = gt + torch.tensor([0.1, 0.0, 0.0])
    torch.testing.assert_close(segment_cost(shifted, gt).diagonal(dim1=1, dim2=2), torch.full((1, 5), 0.1))


@pytest.mark.parametrize("iters, col_tol", [(20, 0.1), (500, 1e-3)])
def test_plan_meets_the_marginals(iters, col_tol):
    outputs, batch = scenes(n_gt=(5, 1, 0, 64, 17))
    noise = torch.randn(outputs["segments"].shape, generator=torch.Generator().manual_seed(1))
    cost = segment_cost(outputs["segments"] + 0.3 * noise, batch["gt_segments"])
    plan = sinkhorn(cost, batch["gt_mask"], eps=0.1, iters=iters, dustbin=0.3).exp()
    n_gt = batch["gt_mask"].sum(-1).float()
    rows, cols = plan.sum(2), plan.sum(1)
    # rows: each prediction 1, the prediction dustbin n_gt (met exactly: the row update comes last)
    torch.testing.assert_close(rows, torch.cat([torch.ones(5, P), n_gt[:, None]], 1), atol=1e-4, rtol=0)
    # columns: each valid GT 1, each padded GT 0, the GT dustbin P (converging: ~5% off after 20 iterations)
    want = torch.cat([batch["gt_mask"].float(), torch.full((5, 1), float(P))], 1)
    torch.testing.assert_close(cols, want, atol=col_tol * P, rtol=0)
    assert (cols[:, :-1] - want[:, :-1]).abs().max() < col_tol


@pytest.mark.parametrize("n_gt", [1, 20, 64])
def test_perfect_matches_get_the_same_mass_at_every_scene_size(n_gt):
    outputs, batch = scenes(n_gt=(n_gt,))
    crit = Criterion(**LOSS)
    _, plan = crit.match(outputs, batch)
    matched = plan[0, :P, :-1].sum(-1)
    assert 0.75 < matched[:n_gt].min() and matched[:n_gt].max() < 0.9  # ~0.82 for eps 0.1, dustbin 0.3
    assert n_gt == P or matched[n_gt:].max() < 1e-6


def test_perfect_prediction_beats_a_shifted_one():
    outputs, batch = scenes()
    crit = Criterion(**WITH_ENDPOINT)
    shifted = {**outputs, "segments": outputs["segments"] + torch.tensor([0.05, -0.05, 0.05])}
    perfect, worse = crit(outputs, batch), crit(shifted, batch)
    for key in ("transport", "endpoint", "total"):
        assert perfect[key] < worse[key], key


def test_endpoint_loss_is_zero_for_a_perfect_prediction():
    outputs, batch = scenes()
    # At eps 0.1 the entropic plan leaks a little mass between nearby GT segments (endpoint term
    # ~0.006 here); with a sharp plan the term vanishes, and it is exactly zero on perfect pairs.
    sharp = Criterion(**{**WITH_ENDPOINT, "sinkhorn": {**LOSS["sinkhorn"], "eps": 0.005, "iters": 200}})
    assert sharp(outputs, batch)["endpoint"] < 1e-4
    dist = endpoint_distance(outputs["segments"], batch["gt_segments"])
    assert dist.diagonal(dim1=1, dim2=2)[batch["gt_mask"]].max() == 0


def test_loss_ignores_gt_order_and_segment_orientation():
    _, batch = scenes()
    outputs = random_outputs(4)
    crit = Criterion(**WITH_ENDPOINT)
    ref = crit(outputs, batch)
    perm = torch.randperm(MAX_GT_EDGES)
    permuted = {k: v[:, perm] for k, v in batch.items()}
    flip = torch.rand(4, MAX_GT_EDGES) < 0.5
    flipped_gt = torch.where(flip[..., None, None], batch["gt_segments"].flip(-2), batch["gt_segments"])
    flipped = {**outputs, "segments": outputs["segments"].flip(-2)}
    for out, b in [(outputs, permuted), (outputs, {**batch, "gt_segments": flipped_gt}), (flipped, batch)]:
        got = crit(out, b)
        for key in ref:
            torch.testing.assert_close(got[key], ref[key], atol=1e-5, rtol=1e-5)


def test_batch_loss_is_the_mean_of_its_halves():
    """Every term is a mean over scenes, so DDP's gradient average over equal shares is exact."""
    _, batch = scenes(n_gt=(5, 1, 40, 64))
    outputs = random_outputs(4)
    crit = Criterion(**WITH_ENDPOINT)
    whole = crit(outputs, batch)
    halves = [crit({k: v[s] for k, v in outputs.items()}, {k: v[s] for k, v in batch.items()})
              for s in (slice(0, 2), slice(2, 4))]
    for key in whole:
        torch.testing.assert_close(whole[key], (halves[0][key] + halves[1][key]) / 2)


def test_gradients_are_finite_with_padding_single_gt_and_empty_scenes():
    _, batch = scenes(n_gt=(1, 0, 3))
    outputs = random_outputs(3)
    terms = Criterion(**WITH_ENDPOINT)(outputs, batch)
    terms["total"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert torch.isfinite(outputs["segments"].grad).all() and torch.isfinite(outputs["conf_logits"].grad).all()
    assert outputs["segments"].grad.abs().sum() > 0


def test_no_gt_at_all_only_trains_the_confidence_down():
    _, batch = scenes(n_gt=(0, 0))
    outputs = random_outputs(2)
    terms = Criterion(**WITH_ENDPOINT)(outputs, batch)
    assert terms["transport"] == 0 and terms["endpoint"] == 0
    expected = F.binary_cross_entropy_with_logits(outputs["conf_logits"], torch.zeros(2, P))
    torch.testing.assert_close(terms["conf"], expected)


@pytest.mark.parametrize("value", [0.0, 1e-8, 1e3, 1e6, 1e30])
def test_extreme_costs_give_no_nan(value):
    _, batch = scenes(n_gt=(5, 1, 0, 64))
    cost = torch.full((4, P, MAX_GT_EDGES), value)
    cost[:, ::3] = 0.0
    log_plan = sinkhorn(cost, batch["gt_mask"], eps=0.1, iters=20, dustbin=0.3)
    assert torch.isfinite(log_plan).all()
    assert torch.isfinite(log_plan.exp().sum(2)).all()


def test_confidence_target_is_the_matched_mass():
    outputs, batch = scenes()
    outputs = {**outputs, "segments": outputs["segments"] + 0.03 * torch.randn_like(outputs["segments"])}
    crit = Criterion(**LOSS)
    _, plan = crit.match(outputs, batch)
    target = plan[:, :P, :-1].sum(-1)
    expected = F.binary_cross_entropy_with_logits(outputs["conf_logits"], target)
    torch.testing.assert_close(crit(outputs, batch)["conf"], expected)
    assert target[0, :5].min() > 0.5 and target[0, 5:].max() < 1e-3  # matched vs far-away queries


def test_endpoint_distance_takes_the_better_order():
    seg = torch.tensor([[[[0.0, 0, 0], [1, 0, 0]]]])
    assert endpoint_distance(seg, seg.flip(-2)).item() == 0
    assert endpoint_distance(seg + torch.tensor([0, 0.2, 0]), seg).item() == pytest.approx(0.2)


def test_weights_switch_terms_off_and_bf16_changes_nothing():
    outputs, batch = scenes()
    off = Criterion(**{**LOSS, "conf": {**LOSS["conf"], "weight": 0.0}, "endpoint": {"weight": 0.0}})
    terms = off(outputs, batch)
    assert set(terms) == {"transport", "total"} and terms["total"] == terms["transport"]
    crit = Criterion(**WITH_ENDPOINT)
    ref = crit(outputs, batch)
    assert set(ref) == {"transport", "conf", "endpoint", "total"}
    torch.testing.assert_close(ref["total"], ref["transport"] + 0.1 * ref["conf"] + 0.1 * ref["endpoint"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = crit({k: v.bfloat16() for k, v in outputs.items()}, batch)
    torch.testing.assert_close(half["total"], ref["total"], atol=2e-2, rtol=2e-2)
    assert half["total"].dtype == torch.float32


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="loss.matching"):
        Criterion(**{**LOSS, "matching": "greedy"})
    with pytest.raises(TypeError, match="tau"):
        Criterion(**{**LOSS, "sinkhorn": {**LOSS["sinkhorn"], "tau": 1.0}})
    with pytest.raises(TypeError, match="weight"):
        Criterion(**{**LOSS, "endpoint": {}})


def test_largest_confidence_target_is_a_logistic_of_the_cost():
    # One query at cost c from its GT, the rest far away: the plan gives it sigmoid((dustbin - c) / (2 eps)),
    # whatever the number of GT segments (the dustbin-entropy correction of the matcher).
    eps, dustbin = LOSS["sinkhorn"]["eps"], LOSS["sinkhorn"]["dustbin"]
    costs = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4])
    expected = torch.sigmoid((dustbin - costs) / (2 * eps))
    for queries, n_gt in ((64, 1), (64, 16), (64, 64), (16, 16), (8, 16)):
        got = matched_mass_at_cost(costs.tolist(), eps, LOSS["sinkhorn"]["iters"], dustbin, queries, n_gt)
        torch.testing.assert_close(torch.tensor(got), expected, atol=1e-3, rtol=0)


def test_hungarian_matching_is_one_to_one_with_hard_targets():
    outputs, batch = scenes()
    crit = Criterion(**{**WITH_ENDPOINT, "matching": "hungarian"})
    _, plan = crit.match(outputs, batch)
    assert torch.equal(plan[:, :P].sum(-1), torch.ones(4, P))  # every prediction goes somewhere, once
    assert torch.equal(plan[:, :P, :-1].sum(1), batch["gt_mask"].float())  # every real GT to one prediction
    assert plan[:, P].sum() == 0  # no GT left in the dustbin
    for b, n in enumerate((5, 1, 0, 64)):  # the perfect prediction: query i answers GT i
        assert torch.equal(plan[b, :n, :n], torch.eye(n))
    terms = crit(outputs, batch)
    assert terms["transport"].item() == pytest.approx(0, abs=1e-6)
    assert terms["endpoint"].item() == pytest.approx(0, abs=1e-6)
    target = plan[:, :P, :-1].sum(-1)
    expected = F.binary_cross_entropy_with_logits(outputs["conf_logits"], target)
    torch.testing.assert_close(terms["conf"], expected)


def test_hungarian_matches_on_what_the_loss_charges_a_pair():
    """With the direction weight 0, a crossed segment on the GT's midpoint costs nothing in
    the segment cost; its endpoints are far off, so with the endpoint term the matcher
    takes the slightly shifted parallel one instead, and the cost weights reach the terms."""
    gt = torch.tensor([[[[0.0, 0, 0], [1, 0, 0]]]])
    shifted = gt + torch.tensor([0.1, 0, 0])
    crossed = torch.tensor([[[[0.5, -0.5, 0], [0.5, 0.5, 0]]]])
    outputs = {"segments": torch.cat([shifted, crossed], dim=1), "conf_logits": torch.zeros(1, 2)}
    batch = {"gt_segments": gt, "gt_mask": torch.ones(1, 1, dtype=torch.bool)}
    no_direction = {**LOSS, "matching": "hungarian", "cost": {**LOSS["cost"], "direction": 0.0}}
    _, plan = Criterion(**no_direction).match(outputs, batch)
    assert plan[0, 1, 0] == 1  # the segment cost alone prefers the crossed one
    crit = Criterion(**{**no_direction, "endpoint": {"weight": 1.0}})
    _, plan = crit.match(outputs, batch)
    assert plan[0, 0, 0] == 1
    assert crit(outputs, batch)["transport"].item() == pytest.approx(0.1)
    double = Criterion(**{**no_direction, "cost": {**no_direction["cost"], "midpoint": 2.0}, "endpoint": {"weight": 1.0}})
    assert double(outputs, batch)["transport"].item() == pytest.approx(0.2)


def test_hungarian_matching_with_fewer_predictions_leaves_gt_in_the_dustbin():
    outputs, batch = scenes(n_gt=(64,))
    few = {"segments": outputs["segments"][:, :40], "conf_logits": outputs["conf_logits"][:, :40]}
    terms = Criterion(**{**LOSS, "matching": "hungarian"})(few, batch)
    _, plan = Criterion(**{**LOSS, "matching": "hungarian"}).match(few, batch)
    assert plan[0, :40, :-1].sum() == 40 and plan[0, 40, :64].sum() == 24  # 24 GT segments unmatched
    assert terms["transport"].item() == pytest.approx(LOSS["sinkhorn"]["dustbin"] * 24 / 64, abs=1e-6)


def test_aux_loss_adds_each_earlier_layer_matched_on_its_own():
    """loss.aux: every earlier decoder layer's predictions pay the same loss, at the aux weight."""
    outputs, batch = scenes(n_gt=(5, 1))
    perfect = {k: v.clone() for k, v in outputs.items()}
    reversed_queries = {k: v.flip(1) for k, v in outputs.items()}  # the same segments, other queries
    outputs["layers"] = [reversed_queries, random_outputs(2)]
    crit = Criterion(**{**LOSS, "matching": "hungarian", "aux": {"weight": 0.5}})
    terms = crit(outputs, batch)
    layer_totals = [crit.set_terms(layer, batch)["total"] for layer in outputs["layers"]]
    torch.testing.assert_close(terms["aux"], sum(layer_totals))
    torch.testing.assert_close(terms["total"], crit.set_terms(perfect, batch)["total"] + 0.5 * terms["aux"])
    # matched on its own: the perfect segments in other queries cost what they cost in their own
    torch.testing.assert_close(crit.set_terms(reversed_queries, batch)["transport"], torch.tensor(0.0))
    terms["total"].backward()
    assert outputs["layers"][1]["segments"].grad.abs().sum() > 0
    assert "aux" not in Criterion(**LOSS)(outputs, batch)
