"""Our HSS against the organisers' own: `hoho2025.metric_helper.hss`, the reference of the
official metric (the book, Method: the metric).

Needs the `official` extra (`pip install -e ".[official]"`, which `make` installs); skipped
without it. Cases: random wireframes with noise, missing and extra edges (sloped edges
included, where the official cylinders are sheared), empty and degenerate sides, and
wireframes post-processed from jittered, partly confident segments as the model's are.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from s23dr.metrics import hss
from s23dr.postprocess import segments_to_wireframe

official = pytest.importorskip("hoho2025.metric_helper", reason="the `official` extra (hoho2025) is not installed")

TOL = 1e-6


def assert_same(pred_v, pred_e, gt_v, gt_e):
    ours = hss(pred_v, pred_e, gt_v, gt_e)
    theirs = official.hss(np.asarray(pred_v, float), np.asarray(pred_e, int).reshape(-1, 2),
                          np.asarray(gt_v, float), np.asarray(gt_e, int).reshape(-1, 2))
    assert (ours.hss, ours.f1, ours.iou) == pytest.approx((theirs.hss, theirs.f1, theirs.iou), abs=TOL)
    return ours


def random_house(rng, n=8, m=12):
    """Vertices in metres (a building-sized box) and random edges without self-loops."""
    vertices = rng.uniform([-6, 0, -5], [6, 4, 5], size=(n, 3))
    first = rng.integers(0, n, m)
    second = (first + rng.integers(1, n, m)) % n
    return vertices, np.stack([first, second], axis=1)


@pytest.mark.parametrize("seed", range(12))
def test_random_wireframes_match_the_official_metric(seed):
    rng = np.random.default_rng(seed)
    gt_v, gt_e = random_house(rng, n=int(rng.integers(4, 12)), m=int(rng.integers(3, 16)))
    pred_v = gt_v + rng.normal(scale=rng.choice([0.05, 0.3, 0.8]), size=gt_v.shape)
    keep = rng.random(len(gt_e)) < 0.8  # some edges missed
    extra_v, extra_e = random_house(rng, n=3, m=2)  # some spurious ones
    pred_v = np.concatenate([pred_v, extra_v])
    pred_e = np.concatenate([gt_e[keep], extra_e + len(gt_v)])
    assert_same(pred_v, pred_e, gt_v, gt_e)


def test_edge_cases_match_the_official_metric():
    v, e = np.array([[0, 0, 0], [4, 0, 0], [4, 2, 3.0]]), np.array([[0, 1], [1, 2]])
    empty_v, empty_e = np.zeros((0, 3)), np.zeros((0, 2), int)
    assert_same(v, e, v, e)  # perfect
    assert_same(v, empty_e, v, e)  # corners right, no edges
    assert_same(v + 100, e, v, e)  # disjoint bounding boxes
    assert_same(np.array([[0, 0, 0], [0, 0, 0], [4, 0, 0.0]]), np.array([[0, 1], [1, 2]]), v, e)  # a zero-length edge
    assert_same(empty_v, empty_e, v, e)


@pytest.mark.parametrize("seed", range(6))
def test_post_processed_predictions_match_the_official_metric(seed):
    rng = np.random.default_rng(seed)
    gt_v, gt_e = random_house(rng)
    center, scale = rng.normal(0, 10, 3), rng.uniform(8, 20)
    segments = (gt_v[gt_e] + rng.normal(scale=0.15, size=(len(gt_e), 2, 3)) - center) / scale
    clutter = rng.uniform(-0.5, 0.5, size=(20, 2, 3))  # the other queries, mostly unconfident
    segments = np.concatenate([segments, clutter])
    conf = np.concatenate([rng.uniform(0.6, 1.0, len(gt_e)), rng.uniform(0.0, 0.8, len(clutter))])
    base = yaml.safe_load((Path(__file__).parents[1] / "params" / "base.yaml").read_text())
    pred_v, pred_e = segments_to_wireframe(segments, conf, center, scale,
                                           conf_threshold=base["eval"]["conf_threshold"], **base["postprocess"])
    assert_same(pred_v, pred_e, gt_v, gt_e)
