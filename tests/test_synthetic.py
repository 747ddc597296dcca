"""The synthetic dataset: exact wireframes, schema-conformant rows, the sampling rules of
the real data's schema, determinism, the world's difficulty knobs, and the round trip through `datasets`."""

import dataclasses

import datasets
import numpy as np
import pytest
import yaml
from scipy.spatial import cKDTree

from s23dr.world import houses, sampling, synthetic

from s23dr import synthetic_data
from s23dr.schema import (ARRAY_FIELDS, EDGE_CLASS, EDGE_CLASSES, MAX_GT_EDGES, NUM_BEHIND_CLASSES, POINT_CLASS,
                          POINT_CLASSES, POINT_FIELDS, SOURCE_DEPTH, SOURCE_SPARSE, hf_features)


@pytest.fixture(scope="module")
def scenes():
    return [synthetic.generate_scene(0, i, "train") for i in range(12)]


def point_set(row):
    """The valid points of a row as a set of (x, y, z, class, source) tuples."""
    m = row["mask"]
    return set(zip(*row["xyz_norm"][m].T, row["class_id"][m], row["source"][m]))


# ---------------------------------------------------------------------------------------
# Houses and their wireframes


def test_every_footprint_and_roof_type_appears():
    drawn = [houses.random_house(np.random.default_rng(i)) for i in range(300)]
    assert {h.footprint for h in drawn} == set(houses.FOOTPRINTS)
    assert {h.roof for h in drawn} == set(houses.ROOFS)
    assert {h.roof for h in drawn if h.footprint != "rect"} == set(houses.WING_ROOFS)


@pytest.mark.parametrize("footprint, roof", [("rect", r) for r in houses.RECT_ROOFS]
                         + [(f, r) for f in ("L", "T", "U") for r in houses.WING_ROOFS])
def test_wireframe_is_a_clean_graph_on_the_roof(footprint, roof):
    for seed in range(4):
        house = houses.random_house(np.random.default_rng(seed), footprint, roof)
        v, e = house.vertices, house.edges
        assert 1 <= len(e) <= MAX_GT_EDGES
        assert e.min() >= 0 and e.max() < len(v) and (e[:, 0] != e[:, 1]).all()
        assert len(np.unique(np.sort(e, axis=1), axis=0)) == len(e), "duplicate edge"
        gaps = np.linalg.norm(v[:, None] - v[None], axis=-1) + np.eye(len(v))
        assert gaps.min() > 1e-3, "duplicate vertex"
        assert set(np.unique(e)) == set(range(len(v))), "unused vertex"
        # every edge lies on the roof surface (a lean-to's flashing runs along a wall, below it)
        t = np.linspace(0.02, 0.98, 15)[:, None, None]
        probes = (v[e[:, 0]] * (1 - t) + v[e[:, 1]] * t).reshape(-1, 3)
        height = houses.roof_height(house.wings, probes[:, [0, 2]])[0]
        flashing = np.tile(house.edge_classes == EDGE_CLASS["flashing"], len(t))
        on_roof = np.isclose(height, probes[:, 1], atol=1e-6)
        assert (on_roof | (flashing & (height > probes[:, 1]))).all()


@pytest.mark.parametrize("footprint, roof", [("rect", "hip"), ("L", "cross_hip"), ("T", "cross_gable"),
                                             ("U", "cross_gable"), ("U", "flat")])
def test_wireframe_is_exactly_the_creases_and_outline_of_the_roof(footprint, roof):
    """Where the roof's slope changes or the roof ends there is a GT edge, and nowhere else."""
    for seed in range(3):
        house = houses.random_house(np.random.default_rng(seed), footprint, roof)
        v, e = house.vertices, house.edges
        step = 0.1
        x, z = np.meshgrid(*(np.arange(v[:, k].min() - 1, v[:, k].max() + 1, step) for k in (0, 2)), indexing="ij")
        height, slope, _ = houses.roof_height(house.wings, np.column_stack([x.ravel(), z.ravel()]))
        on, slope = np.isfinite(height).reshape(x.shape), slope.reshape(*x.shape, 2)
        creases = []
        for axis in (0, 1):
            a, b = (slice(None, -1), slice(None)), (slice(1, None), slice(None))
            a, b = (a, b) if axis == 0 else (a[::-1], b[::-1])
            changed = (on[a] & on[b] & (np.abs(slope[a] - slope[b]).max(-1) > 1e-9)) | (on[a] ^ on[b])
            creases.append(np.column_stack([(x[a] + x[b])[changed] / 2, (z[a] + z[b])[changed] / 2]))
        creases = np.vstack(creases)
        t = np.linspace(0, 1, 400)[:, None, None]
        lines = (v[e[:, 0]] * (1 - t) + v[e[:, 1]] * t)[..., [0, 2]]  # [t, E, 2] plan view
        assert cKDTree(lines.reshape(-1, 2)).query(creases)[0].max() < 2 * step, "a crease without an edge"
        roof_lines = ~np.isin(house.edge_classes, (EDGE_CLASS["flashing"], EDGE_CLASS["step_flashing"]))
        inner = lines[20:-20, roof_lines].reshape(-1, 2)  # chimney flashings are no roof crease
        assert cKDTree(creases).query(inner)[0].max() < 2 * step, "an edge along no crease"


def test_gable_and_cross_gable_wireframes_are_exact():
    plain = (houses.random_house(np.random.default_rng(i), "rect", "gable") for i in range(50))
    house = next(h for h in plain if h.chimney is None and len(h.wings) == 1)  # no chimney, lean-to or garage
    assert sorted(EDGE_CLASSES[c] for c in house.edge_classes) == ["eave"] * 2 + ["rake"] * 4 + ["ridge"]
    ridge = house.edges[house.edge_classes == EDGE_CLASS["ridge"]][0]
    assert np.ptp(house.vertices[ridge, 1]) == 0 and set(house.vertex_kinds[ridge]) == {POINT_CLASSES.index("apex")}
    # a side wing meets the main roof along two valleys that end at its ridge
    cross = houses.random_house(np.random.default_rng(1), "T", "cross_gable")
    valleys = cross.edges[cross.edge_classes == EDGE_CLASS["valley"]]
    assert len(valleys) >= 2
    tops = {max(edge, key=lambda i: cross.vertices[i, 1]) for edge in valleys}
    ridge_ends = set(cross.edges[cross.edge_classes == EDGE_CLASS["ridge"]].ravel())
    assert tops <= ridge_ends


# ---------------------------------------------------------------------------------------
# Determinism


def test_same_seed_gives_identical_arrays(scenes):
    again = synthetic.generate_scene(0, 3, "train")
    for name, value in scenes[3].items():
        assert np.array_equal(np.asarray(value), np.asarray(again[name])), name
    a, b = sampling.sample_scene(scenes[3], 1024, 7), sampling.sample_scene(again, 1024, 7)
    for name in ARRAY_FIELDS:
        assert a[name].tobytes() == b[name].tobytes(), name


def test_other_seed_split_or_index_gives_another_scene(scenes):
    xyz = scenes[3]["xyz"]
    for other in (synthetic.generate_scene(1, 3, "train"), synthetic.generate_scene(0, 3, "validation"), scenes[4]):
        assert other["xyz"].shape != xyz.shape or not np.array_equal(other["xyz"], xyz)


def test_a_scene_does_not_depend_on_the_others_or_on_the_workers(scenes):
    tasks = [(0, "train", i, (512,), synthetic.World()) for i in (5, 2, 9)]
    for (_, _, i, _, _), rows in zip(tasks, synthetic_data.generate_rows(tasks, workers=2)):
        direct = sampling.sample_scene(scenes[i], 512, 0)
        for name in ARRAY_FIELDS:
            assert np.array_equal(rows[512][name], direct[name]), (i, name)


def test_a_world_travels_to_the_workers():
    world = synthetic.World.of({"footprints": ["L"], "noise": 0.5, "outliers": 0.0})
    tasks = [(0, "train", i, (256,), world) for i in (1, 4)]
    for (_, _, i, _, _), rows in zip(tasks, synthetic_data.generate_rows(tasks, workers=2)):
        direct = sampling.sample_scene(synthetic.generate_scene(0, i, "train", world), 256, 0)
        for name in ARRAY_FIELDS:
            assert np.array_equal(rows[256][name], direct[name]), (i, name)


def test_order_ids_are_unique_and_name_the_split():
    ids = {synthetic.generate_scene(0, i, split)["order_id"] for split in ("train", "validation") for i in (0, 1)}
    assert ids == {"syn-train-000000", "syn-train-000001", "syn-validation-000000", "syn-validation-000001"}


# ---------------------------------------------------------------------------------------
# Rows in the schema


@pytest.mark.parametrize("n_points", [512, 2048])
def test_sampled_row_has_every_field_with_its_dtype_and_shape(scenes, n_points):
    row = sampling.sample_scene(scenes[0], n_points, 0)
    assert set(row) == set(ARRAY_FIELDS) | {"order_id"}
    for name, (dtype, shape) in ARRAY_FIELDS.items():
        value = np.asarray(row[name])
        assert value.dtype == dtype, name
        if name in POINT_FIELDS:
            assert value.shape == (n_points, *shape), name
        else:
            assert len(value.shape) == len(shape) and all(s is None or s == d for s, d in zip(shape, value.shape)), name
    assert row["class_id"].max() < len(POINT_CLASSES) and row["behind"].max() < NUM_BEHIND_CLASSES
    assert set(np.unique(row["source"])) <= {SOURCE_SPARSE, SOURCE_DEPTH}
    assert (row["n_views_voted"] >= 1).all() and ((row["vote_frac"] > 0) & (row["vote_frac"] <= 1)).all()


def test_padding_repeats_the_last_valid_point(scenes):
    scene = scenes[1]
    n_points = len(scene["source"]) + 50
    row = sampling.sample_scene(scene, n_points, 0)
    n_valid = len(scene["source"])
    assert row["mask"].sum() == n_valid and row["mask"][:n_valid].all()
    for name in POINT_FIELDS:
        if name != "mask":
            assert (row[name][n_valid:] == row[name][n_valid - 1]).all(), name


def test_gt_segments_are_the_normalised_gt_edges(scenes):
    for scene in scenes:
        row = sampling.sample_scene(scene, 512, 0)
        v, e = row["gt_vertices"], row["gt_edges"]
        assert 1 <= len(e) <= MAX_GT_EDGES and e.min() >= 0 and e.max() < len(v)
        assert len(row["gt_edge_classes"]) == len(e) and row["gt_edge_classes"].max() < len(EDGE_CLASSES)
        expected = (v[e] - row["center"]) / row["scale"]
        np.testing.assert_allclose(row["gt_segments"], expected, atol=1e-6)


def test_normalisation_inverts_to_the_fused_points_around_the_house(scenes):
    for scene in scenes:
        row = sampling.sample_scene(scene, 2048, 0)
        xyz = row["xyz_norm"][row["mask"]] * row["scale"] + row["center"]
        distance, _ = cKDTree(scene["xyz"]).query(xyz)
        assert distance.max() < 1e-5 * row["scale"] * 10
        roof = xyz[row["class_id"][row["mask"]] <= POINT_CLASSES.index("roof")]
        lo, hi = row["gt_vertices"].min(0) - 2, row["gt_vertices"].max(0) + 2
        assert ((roof >= lo) & (roof <= hi)).all(1).mean() > 0.85
        # the robust box of the depth points: most normalised points lie within half a unit
        assert (np.abs(row["xyz_norm"][row["mask"]]) < 0.6).all(1).mean() > 0.9
        assert 5 < row["scale"] < 80


def test_normalisation_ignores_outliers():
    rng = np.random.default_rng(0)
    box = rng.uniform(0, 10, (1000, 3))
    with_outliers = np.vstack([box, rng.uniform(500, 600, (30, 3))])
    center, scale = synthetic.normalisation(with_outliers)
    np.testing.assert_allclose(center, 5, atol=0.3)
    assert np.sqrt(3) * 9 < scale < np.sqrt(3) * 10.5


# ---------------------------------------------------------------------------------------
# Sampling rules


def test_three_sparse_points_to_one_depth_point(scenes):
    for scene in scenes[:4]:
        row = sampling.sample_scene(scene, 2048, 0)
        source = row["source"][row["mask"]]
        assert (source == SOURCE_SPARSE).sum() == 1536 and (source == SOURCE_DEPTH).sum() == 512


def test_a_short_source_is_filled_from_the_other(scenes):
    scene = dict(scenes[0])
    keep = np.flatnonzero(scene["source"] == SOURCE_SPARSE)[:100]
    keep = np.concatenate([keep, np.flatnonzero(scene["source"] == SOURCE_DEPTH)])
    short = {k: (v[keep] if k in POINT_FIELDS or k == "xyz" else v) for k, v in scene.items()}
    row = sampling.sample_scene(short, 1024, 0)
    assert (row["source"] == SOURCE_SPARSE).sum() == 100 and row["mask"].all()


def test_vertex_classes_are_kept_first_then_edges(scenes):
    scene = scenes[2]
    row = sampling.sample_scene(scene, 512, 0)
    for source in (SOURCE_SPARSE, SOURCE_DEPTH):
        cloud_tier = sampling.TIER[scene["class_id"][scene["source"] == source]]
        kept = sampling.TIER[row["class_id"][row["mask"] & (row["source"] == source)]]
        # whatever tier was reached, every point of a better tier was taken
        for tier in range(kept.max()):
            assert (kept == tier).sum() == (cloud_tier == tier).sum(), (source, tier)


def test_larger_samples_contain_smaller_ones_and_cover_more(scenes):
    coverage = {512: [], 2048: [], 4096: []}
    for scene in scenes:
        rows = {s: sampling.sample_scene(scene, s, 0) for s in coverage}
        assert point_set(rows[512]) <= point_set(rows[2048]) <= point_set(rows[4096])
        for s, row in rows.items():
            coverage[s].append(sampling.structural_coverage(row))
        assert coverage[512][-1] <= coverage[2048][-1] <= coverage[4096][-1]
    assert np.mean(coverage[512]) < np.mean(coverage[2048]) < np.mean(coverage[4096])


def test_structural_coverage_counts_edge_length_near_structural_points():
    row = {
        "gt_vertices": np.array([[0, 0, 0], [10, 0, 0]], np.float32), "gt_edges": np.array([[0, 1]]),
        "center": np.zeros(3, np.float32), "scale": np.float32(1),
        "xyz_norm": np.array([[1, 0, 0], [3, 0, 0.2], [8, 0, 0]], np.float32),
        "class_id": np.array([POINT_CLASSES.index("ridge"), POINT_CLASSES.index("apex"),
                              POINT_CLASSES.index("roof")], np.uint8),
        "mask": np.array([True, True, True]),
    }
    assert sampling.structural_coverage(row) == pytest.approx(0.2 - 0.2 * (1 - np.sqrt(0.21) / 0.5) / 2, abs=0.01)
    row["mask"] = np.array([False, False, True])
    assert sampling.structural_coverage(row) == 0.0


def test_line_labels_sit_on_gt_edges_of_their_class(scenes):
    """Label noise aside, a point labelled ridge (eave, ...) lies near a GT ridge (eave, ...)."""
    for name in ("eave", "ridge", "rake", "hip", "valley"):
        near, total = 0, 0
        for scene in scenes:
            xyz = scene["xyz"][scene["class_id"] == POINT_CLASS[name]]
            edges = scene["gt_edges"][scene["gt_edge_classes"] == EDGE_CLASS[name]]
            if len(xyz) == 0 or len(edges) == 0:
                continue
            v = scene["gt_vertices"].astype(np.float64)
            t = np.linspace(0, 1, 50)[:, None, None]
            probes = (v[edges[:, 0]] * (1 - t) + v[edges[:, 1]] * t).reshape(-1, 3)
            near += (cKDTree(probes).query(xyz)[0] < 0.75).sum()
            total += len(xyz)
        assert total > 0 and near / total > 0.75, name


def test_the_sparse_cloud_is_denser_on_roof_lines(scenes):
    """COLMAP-like: far more sparse points per unit of GT edge length than depth points."""
    line_classes = sampling.TIER[np.arange(len(POINT_CLASSES))] <= 1
    sparse_share = np.mean([line_classes[s["class_id"][s["source"] == SOURCE_SPARSE]].mean() for s in scenes])
    depth_share = np.mean([line_classes[s["class_id"][s["source"] == SOURCE_DEPTH]].mean() for s in scenes])
    assert sparse_share > 2 * depth_share


# ---------------------------------------------------------------------------------------
# The world: difficulty knobs

#: The easy world: plain rectangular gable and hip houses, exactly sensed and labelled.
EASY = {"footprints": ["rect"], "roofs": ["gable", "hip"], "extras": False, "noise": 0,
        "occlusion": 0, "label_errors": 0, "outliers": 0}

#: Scenes (0, train, 0..11) as the generator made them before the world existed.
TODAY = {
    "points": [14586, 16410, 11981, 6646, 3012, 7483, 5328, 4817, 16677, 8828, 20776, 12392],
    "gt_edges": [11, 8, 8, 28, 15, 15, 9, 7, 8, 4, 13, 30],
    "houses": [("rect", "gable"), ("U", "flat"), ("T", "flat"), ("U", "cross_hip"), ("L", "cross_gable"),
               ("L", "cross_gable"), ("rect", "hip"), ("rect", "gable"), ("T", "flat"), ("rect", "shed"),
               ("rect", "hip"), ("U", "cross_gable")],
    "coverage": {512: 0.4445, 1024: 0.5159},
}


def local_frame(scene):
    """The scene's points in its house-local frame."""
    return (scene["xyz"] - scene["offset"]) @ scene["rotation"]


def scene_house(seed, index, split, world):
    """The house of a scene, drawn again from the scene's random stream."""
    world = synthetic.World.of(world)
    return houses.random_house(synthetic.scene_rng(seed, index, split), footprints=world.footprints,
                               roofs=world.roofs, extras=world.extras)


def surface_distance(house, xyz):
    """Distance of local points to the nearest of: roof, walls (plan outline of each wing's
    walls), chimney, ground (y = 0). Exact for points on them, an upper bound elsewhere."""
    height = houses.roof_height(house.wings, xyz[:, [0, 2]])[0]
    best = np.minimum(np.where(np.isfinite(height), np.abs(xyz[:, 1] - height), np.inf), np.abs(xyz[:, 1]))
    x, y, z = xyz.T
    for wing in house.wings:
        x0, z0, x1, z1 = wing.box + house.overhang * np.array(wing.walls)[[0, 2, 1, 3]] * (1, 1, -1, -1)
        within_x, within_z = (x > x0 - 1e-9) & (x < x1 + 1e-9), (z > z0 - 1e-9) & (z < z1 + 1e-9)
        for has_wall, d, within in zip(wing.walls, (x - x0, x - x1, z - z0, z - z1),
                                       (within_z, within_z, within_x, within_x)):
            if has_wall:
                best = np.where(within & (y > -1e-9), np.minimum(best, np.abs(d)), best)
    if house.chimney is not None:  # its four sides and its top
        x0, z0, x1, z1, top = house.chimney
        within_x, within_z = (x > x0 - 1e-9) & (x < x1 + 1e-9), (z > z0 - 1e-9) & (z < z1 + 1e-9)
        for d, within in ((x - x0, within_z), (x - x1, within_z), (z - z0, within_x), (z - z1, within_x),
                          (y - top, within_x & within_z)):
            best = np.where(within & (y < top + 1e-9), np.minimum(best, np.abs(d)), best)
    return best


def test_params_name_every_world_key_and_full_world_yaml_is_the_full_difficulty_default():
    for path in ("params/base.yaml", "params/full_world.yaml"):
        assert tuple(yaml.safe_load(open(path))["data"]["synthetic"]["world"]) == synthetic.WORLD_KEYS, path
    world = yaml.safe_load(open("params/full_world.yaml"))["data"]["synthetic"]["world"]
    assert synthetic.World.of(world) == synthetic.World() == synthetic.World.of(None)
    assert synthetic.World().footprints == houses.FOOTPRINTS and set(synthetic.World().roofs) == set(houses.ROOFS)


def test_default_world_reproduces_todays_scenes(scenes):
    assert [len(s["gt_edges"]) for s in scenes] == TODAY["gt_edges"]
    assert [(s["footprint"], s["roof"]) for s in scenes] == TODAY["houses"]
    np.testing.assert_allclose([len(s["source"]) for s in scenes], TODAY["points"], rtol=2e-3)
    for n_points, expected in TODAY["coverage"].items():
        mean = np.mean([sampling.structural_coverage(sampling.sample_scene(s, n_points, 0)) for s in scenes])
        assert mean == pytest.approx(expected, abs=0.01), n_points
    explicit = synthetic.generate_scene(0, 3, "train", dataclasses.asdict(synthetic.World()))
    for name, value in scenes[3].items():
        assert np.array_equal(np.asarray(value), np.asarray(explicit[name])), name


def test_the_easy_world_has_smaller_wireframes_and_covers_more(scenes):
    easy = [synthetic.generate_scene(0, i, "train", EASY) for i in range(12)]
    assert {(s["footprint"], s["roof"]) for s in easy} == {("rect", "gable"), ("rect", "hip")}
    assert {len(s["gt_edges"]) for s in easy} == {7, 9}  # a gable's 7 lines, a hip's 9
    assert np.mean([len(s["gt_edges"]) for s in easy]) < np.mean([len(s["gt_edges"]) for s in scenes])
    coverage = {}
    for name, group in (("easy", easy), ("full", scenes)):
        for n_points in (512, 1024):
            coverage[name, n_points] = np.mean([sampling.structural_coverage(sampling.sample_scene(s, n_points, 0))
                                                for s in group])
    assert coverage["easy", 512] > coverage["full", 512] + 0.1 and coverage["easy", 1024] > coverage["full", 1024]
    assert coverage["easy", 512] < coverage["easy", 1024]  # the point count still matters


def test_families_and_extras_are_drawn_from_the_world():
    rng = np.random.default_rng(0)
    drawn = [houses.random_house(rng, footprints=("L", "U"), roofs=("cross_hip", "gable")) for _ in range(40)]
    assert {(h.footprint, h.roof) for h in drawn} == {("L", "cross_hip"), ("U", "cross_hip")}
    flashing = (EDGE_CLASS["flashing"], EDGE_CLASS["step_flashing"])
    plain = [houses.random_house(rng, extras=False) for _ in range(100)]
    assert all(h.chimney is None and not np.isin(h.edge_classes, flashing).any() for h in plain)
    assert all(len(h.wings) == {"rect": 1, "L": 2, "T": 2, "U": 3}[h.footprint] for h in plain)
    extra = [houses.random_house(rng) for _ in range(100)]
    assert any(h.chimney is not None for h in extra)
    assert any(len(h.wings) > {"rect": 1, "L": 2, "T": 2, "U": 3}[h.footprint] for h in extra)


def test_noise_zero_puts_every_point_on_the_house_or_the_ground():
    world = {"noise": 0, "outliers": 0, "occlusion": 0}  # occlusion 0: no trees or bushes either
    for i in range(4):
        scene = synthetic.generate_scene(0, i, "train", world)
        distance = surface_distance(scene_house(0, i, "train", world), local_frame(scene))
        assert distance.max() < 1e-6, i
        noisy = synthetic.generate_scene(0, i, "train", {**world, "noise": 1})
        # nearly the same points, displaced (the corner and ground scatter sway a few visibility tests)
        assert len(noisy["xyz"]) == pytest.approx(len(scene["xyz"]), rel=0.01)
        assert np.median(surface_distance(scene_house(0, i, "train", world), local_frame(noisy))) > 1e-3


def test_outliers_zero_drops_the_outliers_and_flying_pixels_only():
    for i in range(4):
        full = synthetic.generate_scene(0, i, "train")
        clean = synthetic.generate_scene(0, i, "train", {"outliers": 0})
        n = len(clean["source"])
        assert (clean["visible_src"] != synthetic.VISIBLE_NONE).all()
        assert len(full["source"]) > n and (full["visible_src"][n:] == synthetic.VISIBLE_NONE).all()
        for name in ("class_id", "source", "behind", "n_views_voted"):
            assert np.array_equal(full[name][:n], clean[name]), name
        moved = np.abs(full["xyz"][:n] - clean["xyz"]).max(1) > 0
        assert (full["source"][:n][moved] == SOURCE_DEPTH).all()  # flying pixels are depth points
        assert 0 < moved.mean() < 0.03


def test_label_errors_zero_gives_unanimous_labels_on_their_lines():
    world = {"label_errors": 0, "noise": 0, "outliers": 0}  # exact points, so distances are exact too
    near, total = 0, 0
    for i in range(6):
        scene = synthetic.generate_scene(0, i, "train", world)
        noisy = synthetic.generate_scene(0, i, "train", {**world, "label_errors": 1})
        assert np.array_equal(scene["n_views_voted"], noisy["n_views_voted"])  # the same points
        assert (scene["vote_frac"] == 1).all() and (noisy["vote_frac"] < 1).any()
        v = scene["gt_vertices"].astype(np.float64)
        for name in ("eave", "ridge", "rake", "hip", "valley"):
            xyz = scene["xyz"][scene["class_id"] == POINT_CLASS[name]]
            edges = scene["gt_edges"][scene["gt_edge_classes"] == EDGE_CLASS[name]]
            if len(xyz) == 0:
                continue
            assert len(edges), name
            t = np.linspace(0, 1, 200)[:, None, None]
            probes = (v[edges[:, 0]] * (1 - t) + v[edges[:, 1]] * t).reshape(-1, 3)
            near += (cKDTree(probes).query(xyz)[0] < 0.4).sum()
            total += len(xyz)
    assert total > 1000 and near == total


def test_occlusion_zero_removes_trees_bushes_and_holes():
    hidden, seen = 0, {0: 0, 1: 0}
    for i in range(6):
        for occlusion in (0, 1):
            scene = synthetic.generate_scene(0, i, "train", {"occlusion": occlusion})
            vegetation = (scene["visible_src"] == synthetic.VISIBLE_OCCLUDER) & np.isin(
                scene["visible_id"], (synthetic.OCCLUDER["tree"], synthetic.OCCLUDER["bush"]))
            if occlusion == 0:
                assert not vegetation.any()
            hidden += vegetation.sum() * occlusion
            seen[occlusion] += (scene["class_id"] != POINT_CLASS["non_house"]).sum()
    assert hidden > 0 and seen[0] > 1.1 * seen[1]


def test_a_bad_world_is_one_line_naming_the_key():
    cases = [({"noize": 0}, "world: unknown key 'noize'; expected some of footprints, roofs"),
             ({"noise": -1}, "world.noise should be a number >= 0"),
             ({"occlusion": 2}, r"world.occlusion should be a number in \[0, 1\]"),
             ({"outliers": "none"}, "world.outliers should be a number"),
             ({"extras": "yes"}, "world.extras should be true or false"),
             ({"footprints": ["rect", "hexagon"]}, "world.footprints should be a non-empty list of rect, L, T, U"),
             ({"footprints": []}, "world.footprints should be a non-empty list"),
             ({"footprints": ["L"], "roofs": ["gable"]}, "world.roofs has no roof for footprint 'L'"),
             ([("noise", 0)], "world should be a mapping")]
    for world, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            synthetic.World.of(world)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown key 'noize'"):
        synthetic.generate_scene(0, 0, "train", {"noize": 0})
    with pytest.raises(ValueError, match="unknown key 'noize'"):
        synthetic_data.build_dataset("unused", 1, 1, world={"noize": 0})


def test_the_command_line_defaults_to_params_base_yaml(monkeypatch, tmp_path):
    """What the command is not told is params/base.yaml's data.synthetic; --world changes its world key by key."""
    syn = yaml.safe_load(synthetic_data.BASE_PARAMS.read_text())["data"]["synthetic"]
    calls = []
    monkeypatch.setattr(synthetic_data, "build_dataset", lambda *args, **kwargs: calls.append((args, kwargs)) or {})
    synthetic_data.main([])
    synthetic_data.main(["--out", str(tmp_path), "--train", "3", "--world", "noise=0.5"])
    (out, train, val, _, seed, _), kwargs = calls[0]
    assert (str(out), train, val, seed) == (syn["root"], syn["train"], syn["val"], syn["seed"])
    assert kwargs["world"] == synthetic.World.of(syn["world"])
    (out, train, val, *_), kwargs = calls[1]
    assert (out, train, val) == (tmp_path, 3, syn["val"])
    assert kwargs["world"] == synthetic.World.of({**syn["world"], "noise": 0.5})


@pytest.mark.parametrize("args, message", [(["--train", "0"], "--train should be an integer >= 1, got 0"),
                                           (["--val", "-1"], "--val should be an integer >= 1, got -1"),
                                           (["--points", "512", "0"], "--points should be an integer >= 1, got 0"),
                                           (["--workers", "0"], "--workers should be an integer >= 1, got 0")])
def test_the_command_line_checks_its_sizes_before_writing(args, message, monkeypatch, capsys):
    monkeypatch.setattr(synthetic_data, "build_dataset", lambda *a, **kw: pytest.fail("wrote before checking"))
    with pytest.raises(SystemExit):
        synthetic_data.main(args)
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {message}")


def test_the_command_line_reads_a_world(capsys):
    world = synthetic.parse_world(["roofs=[gable, hip]", "noise=0", "extras=false", "footprints=rect"])
    assert world == synthetic.World(footprints=("rect",), roofs=("gable", "hip"), extras=False, noise=0.0)
    with pytest.raises(SystemExit):
        synthetic_data.main(["--world", "noise=0", "noize=1"])
    assert "unknown key 'noize'" in capsys.readouterr().err.strip().splitlines()[-1]
    with pytest.raises(ValueError, match="expected key=value"):
        synthetic.parse_world(["noise"])


# ---------------------------------------------------------------------------------------
# Bad input and the datasets round trip


def test_bad_arguments_name_what_was_expected(scenes):
    with pytest.raises(ValueError, match="n_points must be a positive int"):
        sampling.sample_scene(scenes[0], 0, 0)
    with pytest.raises(ValueError, match="split must be a non-empty string"):
        synthetic.generate_scene(0, 0, "")
    with pytest.raises(ValueError, match="index must be a non-negative int"):
        synthetic.generate_scene(0, -1, "train")
    with pytest.raises(ValueError, match="points must be positive"):
        synthetic_data.build_dataset("unused", 1, 1, points=())


@pytest.mark.parametrize("world", [None, {"roofs": ["hip", "cross_hip"], "noise": 0.3}])
def test_build_dataset_round_trip(tmp_path, world):
    paths = synthetic_data.build_dataset(tmp_path, n_train=3, n_val=2, points=(64, 128), seed=5, workers=2, world=world)
    assert paths == {64: tmp_path / "sampled_64", 128: tmp_path / "sampled_128"}
    for s, path in paths.items():
        loaded = datasets.load_from_disk(str(path))
        assert {k: len(v) for k, v in loaded.items()} == {"train": 3, "validation": 2}
        assert loaded["train"].features == hf_features()
        row = loaded["validation"].with_format("numpy")[1]
        expected = sampling.sample_scene(synthetic.generate_scene(5, 1, "validation", world), s, 5)
        assert row["order_id"] == expected["order_id"] == "syn-validation-000001"
        for name in ARRAY_FIELDS:
            np.testing.assert_array_equal(np.asarray(row[name]), expected[name], err_msg=name)


def test_world_describe_names_what_differs_from_full_difficulty():
    assert synthetic.World().describe() == "full difficulty"
    easier = synthetic.World.of({"footprints": ["rect"], "roofs": ["gable", "hip"], "extras": False, "noise": 0})
    assert easier.describe() == "footprints rect; roofs gable, hip; extras off; noise 0"
