"""The HSS metric: hand-computed cases, the official edge cases and symmetries."""

import numpy as np
import pytest
import torch
import trimesh

from s23dr import metrics
from s23dr.metrics import _cylinder, _cylinders, _frame, _pairwise_intersection_volume, score_scenes, hss

R = 0.5  # the 2026 thresholds
HEXAGON = 1.5 * np.sqrt(3) * R**2  # area of the 6-section cross-section
APOTHEM = R * np.sqrt(3) / 2
EMPTY_V, EMPTY_E = np.zeros((0, 3)), np.zeros((0, 2), np.int64)


def hexagon_overlap(offset):
    """Area of a regular hexagon (circumradius R) and its copy shifted by offset across two flat sides."""
    return 4 * (R * (APOTHEM - offset / 2) - (APOTHEM**2 - offset**2 / 4) / (2 * np.sqrt(3)))


def house(seed=0, n=10, m=14):
    rng = np.random.default_rng(seed)
    gt_v = rng.normal(size=(n, 3)) * [4, 1.5, 4]
    gt_e = rng.integers(0, n, size=(m, 2))
    pred_v = gt_v + rng.normal(scale=0.3, size=gt_v.shape)
    return pred_v, gt_e.copy(), gt_v, gt_e


def test_perfect_prediction_scores_one():
    v, e = np.array([[0, 0, 0], [4, 0, 0], [4, 1, 3], [0, 2, 3.0]]), [[0, 1], [1, 2], [2, 3], [3, 0], [0, 2]]
    s = hss(v, e, v, e)
    assert (s.f1, s.precision, s.recall) == (1, 1, 1)
    assert s.iou == pytest.approx(1, abs=1e-6) and s.hss == pytest.approx(1, abs=1e-6)


def test_empty_sides_score_zero():
    v, e = [[0, 0, 0], [1, 0, 0]], [[0, 1]]
    assert hss(EMPTY_V, EMPTY_E, v, e).hss == 0
    assert hss(v, e, EMPTY_V, EMPTY_E).hss == 0
    assert hss(EMPTY_V, EMPTY_E, EMPTY_V, EMPTY_E).hss == 0
    vertices_only = hss(v, EMPTY_E, v, e)  # corners right, no edges: F1 = 1 but IoU = 0 -> HSS 0
    assert (vertices_only.f1, vertices_only.iou, vertices_only.hss) == (1, 0, 0)


def test_corner_f1_counts_matches_within_threshold_inclusive():
    gt = [[0, 0, 0], [10, 0, 0]]
    pred = [[0.5, 0, 0], [10, 0.6, 0], [50, 0, 0]]  # 0.5 is a hit (<=), 0.6 a miss, one extra
    s = hss(pred, [], gt, [])
    assert (s.precision, s.recall) == (1 / 3, 1 / 2) and s.f1 == pytest.approx(0.4)


def test_corner_matching_minimises_distance_before_thresholding():
    # Matching p0-g1 and p1-g0 would give two hits (0.45, 0.48); the minimum-cost
    # matching is p0-g0 (0.1) and p1-g1 (0.73), one hit: F1 = 0.5, as in the official code.
    gt = [[0, 0, 0], [0.1, 0.45, 0]]
    pred = [[0.1, 0, 0], [-0.48, 0, 0]]
    assert hss(pred, [], gt, []).f1 == 0.5


def test_edge_iou_of_parallel_offset_edges_is_the_hexagon_overlap():
    # Horizontal edges get a rigid frame; the hexagon has flat sides facing +-Y.
    gt_v, e = [[0, 0, 0], [3, 0, 0]], [[0, 1]]
    for offset in (0.0, 0.2, 0.6):
        pred_v = [[0, offset, 0], [3, offset, 0]]
        inter = hexagon_overlap(offset)
        assert hss(pred_v, e, gt_v, e).iou == pytest.approx(inter / (2 * HEXAGON - inter), abs=1e-6)


def test_cylinders_keep_the_official_sheared_frame():
    # The official frame is not orthonormal: volume scales by 1 - d_y^2 (here 1/2) for this diagonal.
    cyl = _cylinders([[0, 0, 0], [1, 1, 0]], [[0, 1]], R)[0]
    volume = trimesh.Trimesh(cyl.vertices, cyl.faces).volume
    assert volume == pytest.approx(HEXAGON * np.sqrt(2) * 0.5, rel=1e-9)


def test_cylinders_are_trimeshs_cylinder_bit_for_bit():
    """The cylinders are made from one cached unit cylinder; each must be the official
    `trimesh.primitives.Cylinder` exactly, vertex for vertex, for the scores to be the official ones."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        p1, p2 = rng.uniform(-6, 6, 3), rng.uniform(-6, 6, 3)
        if rng.random() < 0.3:
            p2[1] = p1[1]  # horizontal edges take the other branch of the frame
        length = np.linalg.norm(p2 - p1)
        official = trimesh.primitives.Cylinder(radius=R, height=length, transform=_frame(p1, p2, length), sections=6)
        ours = _cylinder(p1, p2, R)
        assert np.array_equal(ours.vertices, official.vertices) and np.array_equal(ours.faces, official.faces)


def test_disjoint_boxes_and_non_touching_cylinders_score_zero():
    v, e = [[0, 0, 0], [3, 0, 0]], [[0, 1]]
    assert hss([[0, 5, 0], [3, 5, 0]], e, v, e).iou == 0
    assert hss([[0, 0.8, 0.8], [3, 0.8, 0.8]], e, v, e).iou == 0  # boxes overlap, cylinders do not


def test_out_of_range_and_zero_length_edges_are_skipped():
    v, e = [[0, 0, 0], [3, 0, 0]], [[0, 1]]
    noisy = hss(v + [[3, 0, 0]], [[0, 1], [0, 7], [1, 1], [1, 2]], v, e)  # [1, 2] has zero length
    assert noisy.iou == pytest.approx(1, abs=1e-6)
    assert hss(v, [[0, 2], [5, 1]], v, e).iou == 0  # no valid predicted edge left


def test_pairwise_fallback_agrees_with_the_union_path():
    pred_v, pred_e, gt_v, gt_e = house(seed=1)
    pred, gt = _cylinders(pred_v, pred_e, R), _cylinders(gt_v, gt_e, R)
    direct = trimesh.boolean.intersection(
        [trimesh.boolean.union(pred, engine="manifold"), trimesh.boolean.union(gt, engine="manifold")],
        engine="manifold",
    ).volume
    assert _pairwise_intersection_volume(pred, gt) == pytest.approx(direct, rel=1e-6)


def test_a_gt_wireframe_scored_again_gives_what_it_gave_made_anew():
    """The GT side is made once per wireframe in a process (`metrics._gt_cylinders`): scored
    against other predictions, and against copies of itself, the same scores to the bit."""
    metrics._cached_cylinders.cache_clear()
    _, _, gt_v, gt_e = house(seed=3)
    preds = [house(seed=3 + k)[:2] for k in range(1, 4)]
    first = [hss(pv, pe, gt_v, gt_e) for pv, pe in preds]
    again = [hss(pv, pe, gt_v.copy(), gt_e.copy()) for pv, pe in preds]
    assert metrics._cached_cylinders.cache_info().currsize == 1  # one GT, made once
    metrics._cached_cylinders.cache_clear()
    anew = [hss(pv, pe, gt_v, gt_e) for pv, pe in preds]
    assert first == again == anew
    hss(*preds[0], gt_v.astype(np.float32), gt_e)  # coordinates keep their dtype (official): another key
    assert metrics._cached_cylinders.cache_info().currsize == 2


def test_input_types_agree():
    pred_v, pred_e, gt_v, gt_e = house(seed=2)
    ref = hss(pred_v, pred_e, gt_v, gt_e)
    as_lists = hss(pred_v.tolist(), pred_e.tolist(), gt_v.tolist(), gt_e.tolist())
    as_tensors = hss(torch.from_numpy(pred_v), torch.from_numpy(pred_e), torch.from_numpy(gt_v), gt_e)
    assert as_lists == ref and as_tensors == ref
    assert 0 < ref.hss < 1


def y_rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


@pytest.mark.parametrize("name", ["mirror_x", "mirror_z", "rotate_180"])
def test_mirror_and_half_turn_leave_the_score_unchanged(name):
    transform = {
        "mirror_x": np.diag([-1.0, 1, 1]), "mirror_z": np.diag([1.0, 1, -1]), "rotate_180": y_rotation(np.pi)
    }[name]
    pred_v, pred_e, gt_v, gt_e = house(seed=3)
    ref, moved = hss(pred_v, pred_e, gt_v, gt_e), hss(pred_v @ transform.T, pred_e, gt_v @ transform.T, gt_e)
    assert moved.f1 == ref.f1 and moved.hss == pytest.approx(ref.hss, abs=1e-6)


def test_any_rotation_about_y_leaves_horizontal_wireframes_unchanged():
    # Sloped edges are not rotation invariant in the official metric (sheared cylinders,
    # ~1e-3 in IoU); horizontal edges get rigid frames that turn with the scene.
    pred_v, pred_e, gt_v, gt_e = house(seed=4)
    pred_v[:, 1], gt_v[:, 1] = 2.1, 2.0
    ref = hss(pred_v, pred_e, gt_v, gt_e)
    for angle in (0.65, 1.3):
        turn = y_rotation(angle)
        assert hss(pred_v @ turn.T, pred_e, gt_v @ turn.T, gt_e).hss == pytest.approx(ref.hss, abs=1e-6)


def test_evaluate_means_per_scene_scores_and_is_independent_of_workers():
    scenes = [house(seed=s) for s in range(6)]
    preds, gts = [(pv, pe) for pv, pe, _, _ in scenes], [(gv, ge) for _, _, gv, ge in scenes]
    serial, parallel = score_scenes(preds, gts, workers=1), score_scenes(preds, gts, workers=2)
    assert serial == parallel
    assert serial.scenes[0] == hss(*preds[0], *gts[0])
    assert serial.mean.hss == pytest.approx(np.mean([s.hss for s in serial.scenes]))
    assert serial.mean.iou == pytest.approx(np.mean([s.iou for s in serial.scenes]))
    with pytest.raises(ValueError, match="predictions"):
        score_scenes(preds, gts[:2])


@pytest.mark.parametrize("workers", [1, 2])
def test_scoring_many_scenes_shows_a_progress_bar_when_asked(workers, capsys):
    scenes = [house(seed=s) for s in range(4)]
    preds, gts = [(pv, pe) for pv, pe, _, _ in scenes], [(gv, ge) for _, _, gv, ge in scenes]
    score_scenes(preds, gts, workers=workers)
    assert capsys.readouterr().err == ""
    score_scenes(preds, gts, workers=workers, progress=True)
    assert "scoring" in (err := capsys.readouterr().err) and "4/4" in err
