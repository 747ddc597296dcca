"""The official S23DR score (HSS), re-implemented to agree with ``hoho2025.metric_helper.hss``.

HSS is the harmonic mean of two numbers (the book, Introduction: the metric):

* corner F1: a Hungarian matching of predicted to GT vertices on raw Euclidean
  distances; a matched pair within ``vert_thresh`` is a true positive;
* edge IoU: every edge inflated to a 6-sided trimesh cylinder of radius
  ``edge_thresh``; the IoU of the two unions, computed by manifold3d.

Every detail follows the official code, including its quirks, because scores
must agree to 1e-6: the cylinder frame is the official one (a shear, not a
rotation, see ``_cylinder``), coordinates keep their input dtype, only edge
indices >= N are skipped (negative ones index from the end, as in numpy), and the
booleans go through ``trimesh.boolean`` exactly as the official code calls them.
"""

import contextlib
import functools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from functools import partial

import numpy as np
import trimesh
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from tqdm.auto import tqdm

CYLINDER_SECTIONS = 6
MIN_EDGE_LENGTH = 1e-6  # shorter edges are skipped, as in the official code
ENGINE = "manifold"
GT_KEPT = 2048  # GT wireframes whose cylinders and union a process keeps (`_gt_cylinders`)


@dataclass(frozen=True)
class Score:
    """One scene's scores (or their means over scenes)."""

    hss: float
    f1: float
    iou: float
    precision: float
    recall: float


@dataclass(frozen=True)
class Evaluation:
    """Per-scene scores and their means over scenes (the dataset score is ``mean.hss``)."""

    scenes: list
    mean: Score


def _numpy(x, dtype=None):
    """A numpy array from a list, array or torch tensor; the dtype is kept unless given."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def corner_scores(pred_vertices, gt_vertices, vert_thresh=0.5):
    """(precision, recall, f1) of the Hungarian matching; the threshold is applied after matching."""
    pred, gt = _numpy(pred_vertices), _numpy(gt_vertices)
    if len(pred) == 0 or len(gt) == 0:
        return 0.0, 0.0, 0.0
    dist = cdist(pred, gt)
    rows, cols = linear_sum_assignment(dist)
    tp = int((dist[rows, cols] <= vert_thresh).sum())
    precision, recall = tp / len(pred), tp / len(gt)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return precision, recall, f1


def _cylinder(p1, p2, radius):
    """The official edge primitive, a 6-sided trimesh cylinder, or None for a zero-length edge.

    The frame's third column is the edge direction d; of the first two world axes,
    the one less aligned with d is kept and the other replaced by a cross product
    with d. The result is not orthonormal: the cylinder is sheared and its volume
    is scaled by 1 - d_x**2 or 1 - d_y**2. That is the official metric; we keep it.
    (Horizontal edges, d_y = 0, get an exact rigid frame.)

    The mesh is trimesh's `Cylinder(radius, height, transform, sections)`, vertex for vertex
    and bit for bit (tested), made from one cached unit cylinder scaled and moved by the
    same arithmetic: building each through trimesh's revolution was most of a scene's scoring.
    """
    length = np.linalg.norm(p2 - p1)
    if length < MIN_EDGE_LENGTH:
        return None
    unit = _unit_cylinder()
    vertices = trimesh.transformations.transform_points(unit.vertices * np.array([radius, radius, length]),
                                                        _frame(p1, p2, length))
    return trimesh.Trimesh(vertices=vertices, faces=unit.faces, process=False)


def _frame(p1, p2, length):
    """The official cylinder's transform (4x4) for the edge p1-p2 of `length` (see `_cylinder`)."""
    d = (p2 - p1) / length
    frame = np.eye(4)
    frame[:3, 2] = d
    frame[:3, 3] = (p1 + p2) / 2
    if abs(d[0]) < abs(d[1]):
        frame[:3, 1] = np.cross(d, frame[:3, 0])
    else:
        frame[:3, 0] = np.cross(frame[:3, 1], d)
    return frame


@functools.cache
def _unit_cylinder():
    """trimesh's cylinder of radius 1 and height 1 about the z axis, `CYLINDER_SECTIONS` sides."""
    return trimesh.creation.cylinder(radius=1.0, height=1.0, sections=CYLINDER_SECTIONS)


def _cylinders(vertices, edges, radius):
    """One cylinder per edge, in edge order; out-of-range and zero-length edges skipped."""
    vertices = _numpy(vertices)
    edges = _numpy(edges, np.int64).reshape(-1, 2)
    edges = edges[(edges < len(vertices)).all(axis=1)]
    cylinders = (_cylinder(vertices[i], vertices[j], radius) for i, j in edges)
    return [c for c in cylinders if c is not None]


def _disjoint(bounds_a, bounds_b):
    """True when two axis-aligned boxes, each (2, 3) = (min, max), do not touch."""
    return bool(np.any(bounds_a[1] < bounds_b[0]) or np.any(bounds_a[0] > bounds_b[1]))


def _box(meshes):
    bounds = np.array([m.bounds for m in meshes])
    return np.stack([bounds[:, 0].min(axis=0), bounds[:, 1].max(axis=0)])


def _pairwise_intersection_volume(pred, gt):
    """The official fallback when a union is not a volume: union of the pairwise intersections."""
    pieces = []
    for a in pred:
        for b in gt:
            if _disjoint(a.bounds, b.bounds):
                continue
            piece = trimesh.boolean.intersection([a, b], engine=ENGINE)
            if piece.is_volume and piece.volume > 0:
                pieces.append(piece)
    return trimesh.boolean.union(pieces, engine=ENGINE).volume if pieces else 0.0


class _Cylinders:
    """One side's edge cylinders (`_cylinders`), their box, and their union, made on first use."""

    def __init__(self, vertices, edges, radius):
        self.meshes = _cylinders(vertices, edges, radius)
        self.box = _box(self.meshes) if self.meshes else None

    @functools.cached_property
    def union(self):
        # A cylinder is a closed volume by construction: trimesh's check of each one (check_volume) is skipped.
        return trimesh.boolean.union(self.meshes, engine=ENGINE, check_volume=False)


def _gt_cylinders(vertices, edges, radius):
    """The GT side's `_Cylinders`, made once per wireframe in a process: an evaluation scores the
    same validation scenes' GT at every step, and its union was a third of a scene's scoring.
    Keyed by the arrays' bytes, dtype and shape, so equal GT gives the very same meshes; the
    newest `GT_KEPT` are kept, more than the 1,024 validation scenes of an evaluation at `full`."""
    vertices, edges = _numpy(vertices), _numpy(edges, np.int64)
    return _cached_cylinders(vertices.dtype.str, vertices.shape, vertices.tobytes(), edges.tobytes(), radius)


@functools.lru_cache(maxsize=GT_KEPT)
def _cached_cylinders(dtype, shape, vertices, edges, radius):
    return _Cylinders(np.frombuffer(vertices, dtype).reshape(shape), np.frombuffer(edges, np.int64), radius)


@np.errstate(invalid="ignore", divide="ignore")  # trimesh divides by the zero volume of an empty mesh
def edge_iou(pred_vertices, pred_edges, gt_vertices, gt_edges, edge_thresh=0.5):
    """Volume IoU of the unions of the edge cylinders (0 if a side is empty or the boxes are disjoint)."""
    if len(pred_edges) == 0 or len(gt_edges) == 0:
        return 0.0
    pred = _Cylinders(pred_vertices, pred_edges, edge_thresh)
    gt = _gt_cylinders(gt_vertices, gt_edges, edge_thresh)
    if not pred.meshes or not gt.meshes or _disjoint(pred.box, gt.box):
        return 0.0
    if pred.union.is_volume and gt.union.is_volume:
        inter = trimesh.boolean.intersection([pred.union, gt.union], engine=ENGINE).volume
    else:
        inter = _pairwise_intersection_volume(pred.meshes, gt.meshes)
    union = pred.union.volume + gt.union.volume - inter
    return float(inter / union) if union > 0 else 0.0


def hss(pred_vertices, pred_edges, gt_vertices, gt_edges, vert_thresh=0.5, edge_thresh=0.5):
    """Score one scene: vertices [N,3] (metres), edges [E,2] vertex indices; lists, arrays or tensors."""
    precision, recall, f1 = corner_scores(pred_vertices, gt_vertices, vert_thresh)
    f1 = float(np.clip(f1, 0, 1))
    iou = float(np.clip(edge_iou(pred_vertices, pred_edges, gt_vertices, gt_edges, edge_thresh), 0, 1))
    score = 2 * f1 * iou / (f1 + iou) if f1 + iou > 0 else 0.0
    return Score(hss=score, f1=f1, iou=iou, precision=float(precision), recall=float(recall))


def _score_pair(pair, vert_thresh, edge_thresh):
    (pred_v, pred_e), (gt_v, gt_e) = pair
    return hss(pred_v, pred_e, gt_v, gt_e, vert_thresh, edge_thresh)


def score_scenes(preds, gts, vert_thresh=0.5, edge_thresh=0.5, workers=2, pool=None, progress=False):
    """Score many scenes; ``preds`` and ``gts`` are sequences of ``(vertices, edges)`` pairs.

    The dataset score is the mean over scenes of each per-scene number. Scenes are
    scored in ``workers`` processes (serially for workers=1 or fewer than 2 scenes
    per worker), those of ``pool`` where one is given, else ones started for the call;
    the result does not depend on ``workers``. With ``progress``, a bar counts the scenes
    scored (a command scoring thousands of scenes would otherwise be silent for minutes).
    """
    if len(preds) != len(gts):
        raise ValueError(f"evaluate: {len(preds)} predictions but {len(gts)} ground truths")
    if len(preds) == 0:
        raise ValueError("evaluate: no scenes to score")
    pairs = [
        ((_numpy(pv), _numpy(pe)), (_numpy(gv), _numpy(ge)))
        for (pv, pe), (gv, ge) in zip(preds, gts)
    ]
    score = partial(_score_pair, vert_thresh=vert_thresh, edge_thresh=edge_thresh)
    bar = partial(tqdm, total=len(pairs), desc="scoring", unit="scene", disable=not progress, dynamic_ncols=True)
    if workers <= 1 or len(pairs) < 2 * workers:
        scenes = list(bar(map(score, pairs)))
    else:
        chunk = max(1, len(pairs) // (8 * workers))
        with contextlib.nullcontext(pool) if pool else ProcessPoolExecutor(workers) as executor:
            scenes = list(bar(executor.map(score, pairs, chunksize=chunk)))
    return Evaluation(scenes=scenes, mean=mean_score(scenes))


def mean_score(scenes):
    """The mean over scenes of each per-scene number (a Score)."""
    return Score(**{f.name: float(np.mean([getattr(s, f.name) for s in scenes])) for f in fields(Score)})
