"""Predicted segments -> wireframe (vertices, edges) in metres (the book, Method: post-processing).

The model predicts `model.segments` independent segments; the metric wants a graph.
Confident segments (every segment, for a model without confidence) each give two
vertices and an edge; endpoints that several segments share are merged in passes of
growing radius (single linkage, so a cluster grows along chains of close points), each
cluster replaced by its mean. Vertices then snap onto corner evidence in the point cloud.
"""

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .schema import POINT_CLASS

#: Point classes whose points mark roof corners; snapping moves vertices onto them.
SNAP_CLASSES = (POINT_CLASS["apex"], POINT_CLASS["eave_end_point"])


def _numpy(x, dtype=np.float64):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _cluster(vertices, radius):
    """Label of each vertex: connected components of the 'within radius' graph."""
    pairs = cKDTree(vertices).query_pairs(radius, output_type="ndarray")
    n = len(vertices)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def merge_vertices(vertices, edges, radii):
    """Merge vertices within each radius in turn; a cluster becomes its mean.

    Edges are re-indexed; self-loops and duplicates (either direction) are dropped,
    and vertices no longer used by an edge are removed.
    """
    for radius in radii:
        if len(vertices) < 2:
            break
        labels = _cluster(vertices, radius)
        counts = np.bincount(labels)
        vertices = np.stack([np.bincount(labels, vertices[:, k]) / counts for k in range(3)], axis=1)
        edges = labels[edges]
    edges = np.sort(edges, axis=1)
    edges = np.unique(edges[edges[:, 0] != edges[:, 1]], axis=0).reshape(-1, 2)
    used, edges = np.unique(edges, return_inverse=True)
    return vertices[used], edges.reshape(-1, 2)


def snap_vertices(vertices, points, point_classes, radius, min_points):
    """Move each vertex to the mean of the apex / eave-end points within `radius` (if at least
    `min_points`): params postprocess.snap_radius and snap_min_points."""
    corners = points[np.isin(point_classes, SNAP_CLASSES)]
    if len(corners) < min_points or len(vertices) == 0:
        return vertices
    snapped = vertices.copy()
    for i, near in enumerate(cKDTree(corners).query_ball_point(vertices, radius)):
        if len(near) >= min_points:
            snapped[i] = corners[near].mean(axis=0)
    return snapped


def kept_queries(conf, conf_threshold):
    """[G] bool: the segments a wireframe keeps, those with confidence above the threshold
    (compared in float64, whatever the dtype of `conf`)."""
    return _numpy(conf) > conf_threshold


def segments_to_wireframe(
    segments,
    conf,
    center,
    scale,
    *,
    conf_threshold,
    merge_radii,
    snap_radius,
    snap_min_points,
    points=None,
    point_classes=None,
):
    """One scene's predicted segments -> (vertices float64 [N,3] in metres, edges int64 [E,2]).

    segments: [G,2,3] endpoints in normalised space; conf: [G] probabilities; segments with
    conf > conf_threshold are kept, every segment where conf is None (a model without confidence head, model.segment_conf false).
    center [3], scale: the scene's normalisation, undone here (x * scale + center).
    The settings are params' (`eval.conf_threshold` and the keys of `postprocess:`, whose
    base.yaml values are the seed's); they have no defaults here, so no copy can drift.
    merge_radii: metres, one merge pass per radius.
    points [P,3], point_classes [P]: optional, normalised like the segments (valid points
    only); when given, vertices snap to the mean of >= snap_min_points apex / eave-end
    points within snap_radius metres. Arrays or torch tensors.
    """
    segments, center, scale = _numpy(segments), _numpy(center), _numpy(scale)
    if segments.ndim != 3 or segments.shape[1:] != (2, 3):
        raise ValueError(f"segments: expected shape [G,2,3], got {segments.shape}")
    if conf is not None:
        conf = _numpy(conf)
        if conf.shape != segments.shape[:1]:
            raise ValueError(f"conf: expected shape [{len(segments)}], got {conf.shape}")
        segments = segments[kept_queries(conf, conf_threshold)]
    kept = segments * scale + center
    vertices = kept.reshape(-1, 3)
    edges = np.arange(len(vertices)).reshape(-1, 2)
    vertices, edges = merge_vertices(vertices, edges, merge_radii)
    if points is not None and point_classes is not None:
        points = _numpy(points) * scale + center
        classes = _numpy(point_classes, np.int64)
        vertices = snap_vertices(vertices, points, classes, snap_radius, snap_min_points)
    return vertices, edges
