"""Sampling a synthetic scene's fused cloud to S points, and the structural coverage a sample
keeps (the book, The synthetic dataset; the scenes come from `synthetic.generate_scene`).

`sample_scene` draws S points by the priority tiers with the 3:1 sparse:depth quota, into
the schema of the real data (`schema.py`; the book, Introduction: the data). Its random
order within a tier does not depend on S, so a larger S takes a superset of the points of a
smaller one, and `structural_coverage` can only grow with S. `sample_sizes` samples one
scene at several S, ordering its points once.

Structural coverage (our definition): the fraction of GT edge length (metres) lying within
`radius` (0.5 m, the metric's threshold) of a valid sampled point whose class is a vertex
or roof-edge class (tiers 0 and 1). A fused cloud holds several thousand such points, many
piled at corners or in dense clumps, so 2048 points (1536 sparse) cover clearly less than
4096: about 65% against 72% (512: 46%, 1024: 56%; the seed reports 66% and 74% for the
real data). `benchmarks/synthetic_speed.py` measures these and the generation speed.
"""

import zlib

import numpy as np
from scipy.spatial import cKDTree

from ..schema import SOURCE_SPARSE

#: Sampling priority tier of each point class (the book, The synthetic dataset).
TIER = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 3, 4], dtype=np.int64)
STRUCTURAL_CLASSES = np.flatnonzero(TIER <= 1)


def sample_scene(scene, n_points, seed):
    """One row in schema form (plus order_id): n_points points by priority tier, 3:1 sparse:depth.

    Within a source, points go by tier (0 vertex classes .. 4 non-house) and then by a
    random key drawn from (seed, order_id) alone, so the sample at a larger n_points contains
    the one at a smaller n_points. A source that runs short is filled from the other.
    Fewer points than n_points: padded by repeating the last valid index, mask False.
    """
    return _sample(scene, n_points, seed, _priority_order(scene, seed))


def sample_sizes(scene, sizes, seed):
    """{S: sample_scene(scene, S, seed)} for every S in `sizes`, the priority order computed once."""
    order = _priority_order(scene, seed)
    return {s: _sample(scene, s, seed, order) for s in sizes}


def _priority_order(scene, seed):
    """Indices of the sparse and of the depth points, each in sampling order."""
    key = np.random.default_rng([int(seed), zlib.crc32(scene["order_id"].encode())]).random(len(scene["source"]))
    order = np.argsort(TIER[scene["class_id"]] + key)  # by tier, then by key (< 1)
    sparse = scene["source"][order] == SOURCE_SPARSE
    return order[sparse], order[~sparse]


def _sample(scene, n_points, seed, order):
    if not (isinstance(n_points, (int, np.integer)) and n_points > 0):
        raise ValueError(f"n_points must be a positive int, got {n_points!r}")
    sparse, depth = order
    n_sparse = min(len(sparse), max(n_points * 3 // 4, n_points - len(depth)))
    n_depth = min(len(depth), n_points - n_sparse)
    chosen = np.concatenate([sparse[:n_sparse], depth[:n_depth]])
    if len(chosen) == 0:
        raise ValueError(f"scene {scene['order_id']}: no points to sample")
    shuffle = np.random.default_rng([int(seed), zlib.crc32(scene["order_id"].encode()), int(n_points)])
    chosen = shuffle.permutation(chosen)  # so that the order within a row tells nothing
    take = np.concatenate([chosen, np.full(n_points - len(chosen), chosen[-1])])
    center, scale = scene["center"], scene["scale"]
    row = {"order_id": scene["order_id"], "xyz_norm": ((scene["xyz"][take] - center) / scale).astype(np.float32)}
    for name in ("class_id", "source", "behind", "visible_src", "visible_id", "n_views_voted", "vote_frac"):
        row[name] = scene[name][take]
    row["mask"] = np.arange(n_points) < len(chosen)
    row["center"], row["scale"] = center, scale
    row["gt_vertices"], row["gt_edges"] = scene["gt_vertices"], scene["gt_edges"]
    vertices = scene["gt_vertices"].astype(np.float64)
    row["gt_segments"] = ((vertices[scene["gt_edges"]] - center) / scale).astype(np.float32)
    row["gt_edge_classes"] = scene["gt_edge_classes"]
    return row


def structural_coverage(row, radius=0.5):
    """Fraction of GT edge length within `radius` metres of a sampled vertex- or edge-class point."""
    mask = np.asarray(row["mask"], bool)
    scale, center = float(np.asarray(row["scale"])), np.asarray(row["center"], np.float64)
    xyz = np.asarray(row["xyz_norm"], np.float64).reshape(-1, 3)[mask] * scale + center
    structural = xyz[np.isin(np.asarray(row["class_id"])[mask], STRUCTURAL_CLASSES)]
    vertices = np.asarray(row["gt_vertices"], np.float64).reshape(-1, 3)
    edges = np.asarray(row["gt_edges"], np.int64).reshape(-1, 2)
    if len(edges) == 0:
        raise ValueError(f"scene {row.get('order_id')}: structural coverage needs GT edges, found none")
    if len(structural) == 0:
        return 0.0
    a, b = vertices[edges[:, 0]], vertices[edges[:, 1]]
    length = np.linalg.norm(b - a, axis=1)
    steps = np.maximum(np.ceil(length / (radius / 5)).astype(int), 1)
    edge = np.repeat(np.arange(len(edges)), steps)
    t = (np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps) + 0.5) / steps[edge]
    probes = a[edge] + t[:, None] * (b - a)[edge]
    distance, _ = cKDTree(structural).query(probes, distance_upper_bound=radius)
    weight = (length / steps)[edge]
    return float(weight[np.isfinite(distance)].sum() / weight.sum())
