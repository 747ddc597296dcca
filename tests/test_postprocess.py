"""Segments -> wireframe: filtering, de-normalisation, merging, snapping."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from s23dr.postprocess import segments_to_wireframe
from s23dr.schema import POINT_CLASS

# A gable roof in metres: 6 corners, 7 edges (ridge, 4 rakes, 2 eaves).
CORNERS = np.array([[0, 3, 0], [10, 3, 0], [0, 0, -4], [10, 0, -4], [0, 0, 4], [10, 0, 4.0]])
EDGES = np.array([[0, 1], [0, 2], [1, 3], [0, 4], [1, 5], [2, 3], [4, 5]])
CENTER, SCALE = np.array([5.0, 1.5, 0.0]), 12.0
BASE = yaml.safe_load((Path(__file__).parents[1] / "params" / "base.yaml").read_text())
POST = {"conf_threshold": BASE["eval"]["conf_threshold"], **BASE["postprocess"]}  # the seed's settings


def normalised_segments(jitter=0.05, seed=0):
    """The roof's edges as segments in normalised space, endpoints jittered by up to `jitter` metres."""
    rng = np.random.default_rng(seed)
    segments = CORNERS[EDGES] + rng.uniform(-jitter, jitter, size=(len(EDGES), 2, 3))
    return (segments - CENTER) / SCALE


def canonical(vertices, edges):
    """Edges as a set of rounded endpoint pairs, independent of vertex order."""
    return {tuple(sorted(map(tuple, np.round(vertices[e], 1)))) for e in edges}


def test_jittered_segments_merge_to_the_roof():
    segments = normalised_segments()
    vertices, edges = segments_to_wireframe(segments, np.ones(len(segments)), CENTER, SCALE, **POST)
    assert vertices.shape == (6, 3) and edges.shape == (7, 2) and edges.dtype == np.int64
    assert canonical(vertices, edges) == canonical(CORNERS, EDGES)
    assert np.abs(np.sort(vertices, axis=0) - np.sort(CORNERS, axis=0)).max() < 0.05


def test_confidence_threshold():
    segments = normalised_segments()
    conf = np.full(len(segments), 0.9)
    conf[[5, 6]] = [0.7, 0.2]  # both eaves dropped: 0.7 is not over the threshold
    vertices, edges = segments_to_wireframe(segments, conf, CENTER, SCALE, **POST)
    assert len(edges) == 5 and len(vertices) == 6
    lower = segments_to_wireframe(segments, conf, CENTER, SCALE, **{**POST, "conf_threshold": 0.69})
    assert len(lower[1]) == 6  # 0.7 now passes
    none = segments_to_wireframe(segments, np.zeros(len(segments)), CENTER, SCALE, **POST)
    assert none[0].shape == (0, 3) and none[1].shape == (0, 2)
    every = segments_to_wireframe(segments, None, CENTER, SCALE, **POST)  # a model without confidence
    for got, want in zip(every, segments_to_wireframe(segments, np.ones(len(segments)), CENTER, SCALE, **POST)):
        assert np.array_equal(got, want)


def test_denormalisation_and_torch_inputs():
    segment = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]]])
    center, scale = torch.tensor([1.0, 2.0, 3.0]), torch.tensor(4.0)
    vertices, edges = segments_to_wireframe(segment, torch.tensor([0.9]), center, scale, **POST)
    assert np.allclose(np.sort(vertices, axis=0), [[1, 2, 3], [3, 2, 3]]) and edges.tolist() == [[0, 1]]


def test_duplicates_and_self_loops_are_dropped():
    roof = normalised_segments()
    reversed_copy = roof[:1, ::-1]  # the ridge again, endpoints swapped
    short = (CORNERS[[0, 0]] + [[0, 0, 0], [0.1, 0, 0]] - CENTER)[None] / SCALE  # collapses to a point
    segments = np.concatenate([roof, reversed_copy, short])
    vertices, edges = segments_to_wireframe(segments, np.ones(len(segments)), CENTER, SCALE, **POST)
    assert len(vertices) == 6 and len(edges) == 7
    assert (edges[:, 0] != edges[:, 1]).all()


def test_merge_radii_grow_in_passes():
    # Two corners 0.5 m apart survive radii below 0.5 m and merge at 0.6 m.
    segments = (np.array([[[0, 0, 0], [5, 0, 0]], [[0, 0, 0.5], [0, 0, 5]]]) - CENTER) / SCALE
    kept = segments_to_wireframe(segments, [1, 1], CENTER, SCALE, **{**POST, "merge_radii": (0.15, 0.3)})
    merged = segments_to_wireframe(segments, [1, 1], CENTER, SCALE, **{**POST, "merge_radii": (0.15, 0.3, 0.6)})
    assert len(kept[0]) == 4 and len(merged[0]) == 3
    assert np.allclose(merged[0][np.bincount(merged[1].ravel()) == 2], [[0, 0, 0.25]])


def test_snap_moves_vertices_to_nearby_corner_points():
    segments = normalised_segments(jitter=0.0)
    apex = POINT_CLASS["apex"]
    # Two points near corner 0, one near corner 1, one far from every corner.
    points = np.array([[0.2, 3.1, 0], [0.1, 3.3, 0], [10.1, 3, 0], [3, 0, 0]])
    classes = np.array([apex, POINT_CLASS["eave_end_point"], apex, apex])
    vertices, _ = segments_to_wireframe(
        segments, np.ones(len(segments)), CENTER, SCALE, **POST,
        points=(points - CENTER) / SCALE, point_classes=classes,
    )
    index = {tuple(np.round(v, 6)) for v in vertices}
    assert (0.15, 3.2, 0.0) in index  # snapped to the mean of two points
    assert (10.0, 3.0, 0.0) in index  # one point is not enough


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="segments"):
        segments_to_wireframe(np.zeros((4, 3)), np.ones(4), CENTER, SCALE, **POST)
    with pytest.raises(ValueError, match="conf"):
        segments_to_wireframe(np.zeros((4, 2, 3)), np.ones(3), CENTER, SCALE, **POST)
