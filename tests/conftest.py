"""Shared fixtures: small random scenes that are valid in the schema of s23dr.schema."""

import numpy as np
import pytest

from s23dr.schema import EDGE_CLASSES, NUM_BEHIND_CLASSES, POINT_CLASSES


def random_scene(order_id="scene", n_points=64, n_valid=48, n_edges=6, seed=0):
    """A valid scene dict with the schema's dtypes: `n_valid` real points padded to
    `n_points` by repeating the last one, and `n_edges` GT edges whose normalised
    segments agree with the GT vertices, center and scale."""
    rng = np.random.default_rng(seed)
    take = np.minimum(np.arange(n_points), n_valid - 1)  # padding repeats the last valid index
    center = rng.normal(0, 10, 3).astype(np.float32)
    scale = np.float32(rng.uniform(5, 20))
    vertices = (center + rng.uniform(-0.4, 0.4, (n_edges + 1, 3)) * scale).astype(np.float32)
    edges = np.stack([np.arange(n_edges), np.arange(1, n_edges + 1)], axis=1).astype(np.int64)
    return {
        "order_id": order_id,
        "xyz_norm": rng.uniform(-0.5, 0.5, (n_points, 3)).astype(np.float32)[take],
        "class_id": rng.integers(0, len(POINT_CLASSES), n_points).astype(np.uint8)[take],
        "source": rng.integers(0, 2, n_points).astype(np.uint8)[take],
        "mask": np.arange(n_points) < n_valid,
        "behind": rng.integers(0, NUM_BEHIND_CLASSES, n_points).astype(np.int16)[take],
        "visible_src": rng.integers(0, 3, n_points).astype(np.uint8)[take],
        "visible_id": rng.integers(0, NUM_BEHIND_CLASSES, n_points).astype(np.int16)[take],
        "n_views_voted": rng.integers(1, 6, n_points).astype(np.uint8)[take],
        "vote_frac": rng.uniform(0.3, 1.0, n_points).astype(np.float32)[take],
        "center": center,
        "scale": scale,
        "gt_vertices": vertices,
        "gt_edges": edges,
        "gt_segments": ((vertices[edges] - center) / scale).astype(np.float32),
        "gt_edge_classes": rng.integers(0, len(EDGE_CLASSES), n_edges).astype(np.int64),
    }


@pytest.fixture
def make_scene():
    """random_scene as a fixture: make_scene("id", n_points=..., n_valid=..., n_edges=..., seed=...)."""
    return random_scene


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A tiny synthetic dataset at the smoke profile's point counts (128 and 256)."""
    from s23dr.synthetic_data import build_dataset

    root = tmp_path_factory.mktemp("synthetic")
    build_dataset(root, n_train=32, n_val=8, points=(128, 256), seed=0, workers=1)
    return root


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same global torch RNG state, so none depends on test order."""
    import torch

    torch.manual_seed(0)
