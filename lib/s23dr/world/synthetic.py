"""Synthetic S23DR scenes: procedural houses, their exact roof wireframe and a simulated
multi-view fused point cloud, with the per-point fields of the schema of the real data
(`schema.py`; the book, Introduction: the data, and The synthetic dataset).

This is the project's default data when the hub is out of reach. One scene, top to bottom:

1. `houses.random_house`: footprint, roof, wireframe (metres, Y up, house-local frame).
2. `Surroundings`: ground, trees and bushes (occluders) and 3-8 cameras, street level or
   raised, on an arc that may leave a side of the house unseen.
3. Candidate surface points: a *sparse* pool (COLMAP-like: clumped along the roof lines,
   piled up at corners) and a *depth* pool (uniform on surfaces, thinned where the best
   view is grazing). A point survives if enough cameras see it (facing, in the field of
   view, not behind a tree, bush or the house): 2 views for sparse, 1 for depth.
4. Labels: the true 13-class label from the distance to GT vertices and edges (the edge
   class decides the point class), with stretches and corners the simulated segmentation
   misses; per-view votes with label noise give `class_id`, `n_views_voted` and
   `vote_frac`. `behind` is an independent vote on a 28-id gestalt label set (vegetation:
   the house part behind it); `visible_src`/`visible_id` say whether the views saw the
   point's own gestalt label (1) or an occluder (2: tree, bush, ground; 0 for outliers).
5. Noise: a few cm to tens of cm on sparse points (more with fewer views, heavy-tailed),
   per-view depth-scale bias on depth points, outliers, flying pixels, holes. Then a random
   yaw about Y and a position.
6. `center`/`scale` from all depth points of the cloud (median, MAD filter k=2.5, 2.5..97.5
   percentile box; scale = its diagonal), so every S shares one normalisation.

`sampling.sample_scene` then draws S points of the cloud by the priority tiers, and
`sampling.structural_coverage` measures how much of the wireframe they keep;
`synthetic_data.build_dataset` writes the datasets (and is the command line).

The world: `World` (params `data.synthetic.world`) sets the difficulty; its defaults are the
full difficulty described above, and at them the scenes are exactly those of the generator
before the world existed. The scales draw the same random numbers at any value, so a scene
keeps its house, cameras and candidate points and changes in what the knob controls (the
corner and ground scatter of `noise` also sways a few visibility tests); the house
families, `extras` and `occlusion`'s count of trees and bushes change the draws after them.

- footprints: the footprint families drawn (a subset of rect, L, T, U; weights renormalised).
- roofs: the roof families drawn (of gable, hip, pyramid, flat, shed, cross_gable, cross_hip).
- extras: whether chimneys, lean-tos and detached garages appear (true/false).
- noise: scales the sparse and depth point noise and the scatter at corners and on the ground (0: exact points; >= 0).
- occlusion: scales trees and bushes (count), the unseen arc of the cameras and the holes' radii (0: none; 0..1).
- label_errors: scales the segmentation's missed stretches and corners and the wrong-vote chance (0: true labels; 0..1).
- outliers: scales the share of sparse outliers and of depth flying pixels kept (0: none; 0..1).
"""

import dataclasses
import zlib

import numpy as np
import yaml

from . import houses
from ..schema import (ARRAY_FIELDS, EDGE_CLASSES, NUM_BEHIND_CLASSES, POINT_CLASS,
                     POINT_CLASSES, SOURCE_DEPTH, SOURCE_SPARSE)

#: Our simulated gestalt label set (the ids of `behind` and of `visible_id` when `visible_src` is 1).
GESTALT_CLASSES = (
    "unclassified", "apex", "eave_end_point", "flashing_end_point", "rake", "ridge", "eave", "hip",
    "valley", "flashing", "step_flashing", "roof", "post", "ground_line", "door", "garage", "window",
    "shutter", "fascia", "soffit", "horizontal_siding", "vertical_siding", "brick", "concrete",
    "other_wall", "trim", "unknown", "transition_line",
)
GESTALT = {name: i for i, name in enumerate(GESTALT_CLASSES)}
assert len(GESTALT_CLASSES) == NUM_BEHIND_CLASSES

#: Occluder labels (the ids of `visible_id` when `visible_src` is 2).
OCCLUDERS = ("tree", "bush", "grass", "road")
OCCLUDER = {name: i for i, name in enumerate(OCCLUDERS)}

#: `visible_src` values: 0 = nothing labelled (outliers), 1 = a gestalt class, 2 = an occluder.
VISIBLE_NONE, VISIBLE_GESTALT, VISIBLE_OCCLUDER = 0, 1, 2

#: Class of a stray vote: mostly the big surface classes, rarely a line or corner class.
STRAY_VOTE = np.array([0.01] * 10 + [0.35, 0.35, 0.2])

#: Point class of the points along an edge of each GT edge class.
EDGE_POINT_CLASS = np.array([POINT_CLASS[{"cornice_return": "eave", "cornice_strip": "eave",
                                          "transition_line": "roof"}.get(name, name)]
                             for name in EDGE_CLASSES], dtype=np.int64)

#: Gestalt id of each point class (a wall point's own id is its material or a window).
CLASS_GESTALT = np.array([GESTALT[name] for name in POINT_CLASSES[:11] + ("other_wall", "unclassified")],
                         dtype=np.int64)

# Surface kinds of candidate points.
ROOF, EDGE, CORNER, WALL, CHIMNEY, GROUND, TREE, BUSH = range(8)
HOUSE_KINDS = (ROOF, EDGE, CORNER, WALL, CHIMNEY)

WALL_MATERIALS = ("horizontal_siding", "vertical_siding", "brick", "concrete", "other_wall")

UP = np.array([0.0, 1.0, 0.0])

#: Points on roof lines share the visibility of a probe every this many metres along their edge.
PROBE_SPACING = 0.25

#: Length (m) of the stretches of a GT edge that the simulated segmentation paints or misses as a whole.
STRETCH = 1.5


# ---------------------------------------------------------------------------------------
# The world: how hard the scenes are


@dataclasses.dataclass(frozen=True)
class World:
    """The generator's difficulty (module docstring, "The world"); the defaults are full difficulty.

    Make one with `World.of`, which checks every value; the scales are floats, the families
    tuples in the order of `houses.FOOTPRINTS` and `houses.ROOFS`.
    """

    footprints: tuple = houses.FOOTPRINTS
    roofs: tuple = houses.ROOFS
    extras: bool = True
    noise: float = 1.0
    occlusion: float = 1.0
    label_errors: float = 1.0
    outliers: float = 1.0

    @classmethod
    def of(cls, world=None):
        """A checked World from None (the defaults), a World, or a mapping of some of its keys.

        A bad key or value raises ValueError, one line naming it and what is expected.
        """
        if world is None:
            return cls()
        if isinstance(world, World):
            world = dataclasses.asdict(world)
        if not isinstance(world, dict):
            raise ValueError(f"world should be a mapping of {', '.join(WORLD_KEYS)}, got {world!r}")
        unknown = [key for key in world if key not in WORLD_KEYS]
        if unknown:
            raise ValueError(f"world: unknown key {unknown[0]!r}; expected some of {', '.join(WORLD_KEYS)}")
        values = {}
        for key, value in world.items():
            if key in ("footprints", "roofs"):
                known = houses.FOOTPRINTS if key == "footprints" else houses.ROOFS
                names = [value] if isinstance(value, str) else value
                if not (isinstance(names, (list, tuple)) and names and set(names) <= set(known)):
                    raise ValueError(f"world.{key} should be a non-empty list of {', '.join(known)}, got {value!r}")
                values[key] = tuple(name for name in known if name in names)
            elif key == "extras":
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError(f"world.extras should be true or false, got {value!r}")
                values[key] = bool(value)
            else:
                high = np.inf if key == "noise" else 1.0
                number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                if not (number and 0 <= value <= high):  # `not <=` also refuses NaN
                    limits = ">= 0" if key == "noise" else "in [0, 1]"
                    raise ValueError(f"world.{key} should be a number {limits}, got {value!r}")
                values[key] = float(value)
        out = dataclasses.replace(cls(), **values)
        for footprint in out.footprints:
            if not set(houses.suitable_roofs(footprint)) & set(out.roofs):
                raise ValueError(f"world.roofs has no roof for footprint {footprint!r}; add one of "
                                 f"{', '.join(houses.suitable_roofs(footprint))}")
        return out

    def describe(self):
        """The world in words, for tables: "full difficulty", or the keys that differ from it."""
        def text(value):
            if isinstance(value, tuple):
                return ", ".join(value)
            return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"

        full = World()
        parts = [f"{key} {text(getattr(self, key))}" for key in WORLD_KEYS if getattr(self, key) != getattr(full, key)]
        return "; ".join(parts) or "full difficulty"

    def tag(self):
        """A short stable digest of the world, for dataset fingerprints."""
        return f"{zlib.crc32(repr(self).encode()):08x}"


WORLD_KEYS = tuple(field.name for field in dataclasses.fields(World))


def parse_world(pairs):
    """["key=value", ...] (values read as YAML, e.g. roofs=[gable,hip]) -> a checked World."""
    world = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"--world {pair}: expected key=value, e.g. noise=0.5 or roofs=[gable,hip]")
        world[key.strip()] = yaml.safe_load(raw)
    return World.of(world)


def _fewer_errors(p, scale):
    """A probability p of getting something right, with its error probability 1 - p scaled by `scale`.

    In float64, returned in p's dtype: exactly p at scale 1 and exactly 1 at scale 0.
    """
    p64 = np.asarray(p, np.float64)
    return (p64 + (1 - p64) * (1 - scale)).astype(np.asarray(p).dtype)


# ---------------------------------------------------------------------------------------
# Candidate surface points (house-local frame)


def _split_code(split):
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string such as 'train', got {split!r}")
    return zlib.crc32(split.encode())


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _pick(rng, weights, n):
    """n indices drawn with probability proportional to weights (rng.choice with p, faster)."""
    cdf = np.cumsum(weights)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)


def _dots(u, p):
    """u @ p.T for u [K, 3] and p [M, 3]: [K, M], without BLAS.

    For products this thin, BLAS costs many times the arithmetic (and its threads stall
    whenever the other core is busy); three broadcast multiply-adds over the rows of p.T
    do not, and numpy's inner loops then run over the long point axis.
    """
    pt = np.ascontiguousarray(p.T)
    return u[:, :1] * pt[0] + u[:, 1:2] * pt[1] + u[:, 2:] * pt[2]


def _roof_points(rng, house, n):
    """n plan-uniform points on the roof (fewer where wings overlap or a chimney stands)."""
    boxes = np.array([w.box for w in house.wings])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    wing = _pick(rng, area, n)
    xz = boxes[wing, :2] + rng.random((n, 2)) * (boxes[wing, 2:] - boxes[wing, :2])
    height, slope, owner = houses.roof_height(house.wings, xz)
    keep = owner == wing
    if house.chimney is not None:
        x0, z0, x1, z1, _ = house.chimney
        keep &= ~((xz[:, 0] > x0) & (xz[:, 0] < x1) & (xz[:, 1] > z0) & (xz[:, 1] < z1))
    xyz = np.column_stack([xz[:, 0], height, xz[:, 1]])[keep]
    normal = _unit(np.column_stack([-slope[:, 0], np.ones(n), -slope[:, 1]])[keep])
    return xyz, normal


def _wall_points(rng, house, n):
    """About n points on the walls: box sides inset by the overhang, from the ground up to the
    roof, minus the parts inside another wing (below its roof).

    Returns xyz, normals, window flags and each point's depth below the roof above it.
    """
    o = house.overhang
    sides = []  # (wing, start xz, end xz, outward normal xz)
    for w, wing in enumerate(house.wings):
        x0, z0, x1, z1 = wing.box + o * np.array(wing.walls)[[0, 2, 1, 3]] * (1, 1, -1, -1)
        ends = (((x0, z0), (x0, z1)), ((x1, z0), (x1, z1)), ((x0, z0), (x1, z0)), ((x0, z1), (x1, z1)))
        for has_wall, (a, b), normal in zip(wing.walls, ends, ((-1, 0), (1, 0), (0, -1), (0, 1))):
            if has_wall:
                sides.append((w, a, b, normal))
    owner, a, b, normal = (np.array(v) for v in zip(*sides))
    length = np.linalg.norm(b - a, axis=1)
    side = _pick(rng, length, n)
    u = rng.random(n)
    x = a[side, 0] + u * (b[side, 0] - a[side, 0])
    z = a[side, 1] + u * (b[side, 1] - a[side, 1])
    top = houses.roof_height(house.wings, np.column_stack([x, z]))[0]
    y = rng.random(n) * top
    inner = np.zeros(n, bool)
    for w, wing in enumerate(house.wings):  # inside another wing's walls (its open ends reach in) and under its roof
        reach = np.where(wing.walls, -o, 2 * o + 0.05)[[0, 2, 1, 3]] * (-1, -1, 1, 1)
        x0, z0, x1, z1 = wing.box + reach
        inside = (x > x0) & (x < x1) & (z > z0) & (z < z1) & (owner[side] != w)
        inner[inside] |= y[inside] < houses.wing_roof(wing, x[inside], z[inside])[0]
    along = u * length[side]  # window columns and storey bands make the wall labels patchy
    window = (np.mod(along, 2.8) < 1.1) & (np.mod(y, 2.9) > 0.9) & (np.mod(y, 2.9) < 2.3)
    keep = ~inner
    xyz = np.column_stack([x, y, z])[keep]
    normals = np.column_stack([normal[side, 0], np.zeros(n), normal[side, 1]])[keep]
    return xyz, normals, window[keep], (top - y)[keep]


def _chimney_points(rng, house, n):
    """n points on the chimney's four sides and top (the base follows the roof)."""
    x0, z0, x1, z1, top = house.chimney
    face = rng.integers(0, 5, n)  # sides x0, x1, z0, z1, then the top
    u, v = rng.random(n), rng.random(n)
    x = np.select([face == 0, face == 1], [x0, x1], x0 + u * (x1 - x0))
    z = np.select([face == 2, face == 3], [z0, z1], z0 + np.where(face < 2, u, v) * (z1 - z0))
    base, _, _ = houses.roof_height(house.wings, np.column_stack([x, z]))
    y = np.where(face == 4, top, base + v * (top - base))
    normal = np.zeros((n, 3))
    normal[np.arange(n), np.array([0, 0, 2, 2, 1])[face]] = np.array([-1, 1, -1, 1, 1])[face]
    return np.column_stack([x, y, z]), normal


def _edge_points(rng, house, n):
    """n points on the GT edges, clumped like image features: each edge gets a random texture
    level and three texture spots, so some stretches are dense and others nearly empty.

    Returns xyz [n, 3], each point's edge [n] and its parameter t in [0, 1] along it.
    """
    a, b = house.vertices[house.edges[:, 0]], house.vertices[house.edges[:, 1]]
    length = np.linalg.norm(b - a, axis=1)
    weight = length * rng.lognormal(0, 2.0, len(length))
    edge = _pick(rng, weight, n)
    spots = rng.random((len(length), 3))
    spread = rng.uniform(0.1, 0.6, (len(length), 3)) / length[:, None]
    spot = rng.integers(0, 3, n)
    t = spots[edge, spot] + rng.normal(size=n) * spread[edge, spot]
    t = np.where(rng.random(n) < 0.05, rng.random(n), np.clip(t, 0, 1))
    return a[edge] + t[:, None] * (b[edge] - a[edge]), edge, t


def _sphere_points(rng, centers, radii, n, roughness):
    """n points on spheres (area-weighted), radially jittered like foliage."""
    which = _pick(rng, radii ** 2, n)
    normal = _unit(rng.normal(size=(n, 3)))
    r = radii[which] * (1 + roughness * (rng.random(n) - 0.5))
    return centers[which] + normal * r[:, None], normal, which


def _outward(house, xyz):
    """A visibility normal for points on roof lines: up, tilted away from the house centre."""
    centre = house.vertices.mean(0)
    away = xyz - centre
    away[:, 1] = 0
    return _unit(away / (np.linalg.norm(away, axis=1, keepdims=True) + 1.0) * 1.2 + UP)


def _line_probes(house):
    """Probes whose visibility the points on roof lines share: the centres of PROBE_SPACING
    long bins along every GT edge, then the vertices. Returns xyz [P, 3], normal [P, 3],
    and each edge's first probe and number of bins."""
    a, b = house.vertices[house.edges[:, 0]], house.vertices[house.edges[:, 1]]
    bins = np.maximum(np.ceil(np.linalg.norm(b - a, axis=1) / PROBE_SPACING).astype(int), 1)
    first = np.cumsum(bins) - bins
    edge = np.repeat(np.arange(len(bins)), bins)
    t = (np.arange(bins.sum()) - first[edge] + 0.5) / bins[edge]
    xyz = np.vstack([a[edge] + t[:, None] * (b - a)[edge], house.vertices])
    return {"xyz": xyz, "normal": _outward(house, xyz), "first": first, "bins": bins}


# ---------------------------------------------------------------------------------------
# The scene


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: arrays have no one truth value
class Surroundings:
    """What stands around a house and looks at it (`_surroundings`), in its local frame (metres, Y up).

    Trees and bushes are spheres, trees first; the ground is a plan box around the house at y = 0.
    Every camera looks along its axis and sees within a cone of half-angle arccos(cos_fov).
    """

    lo: np.ndarray              # [2] float64, (x, z) low corner of the house's plan box (its wings' boxes)
    hi: np.ndarray              # [2] float64, (x, z) high corner
    top: float                  # y of the house's highest vertex
    sphere_centers: np.ndarray  # [K, 3] float64, the trees' and then the bushes' centres
    sphere_radii: np.ndarray    # [K] float64
    n_trees: int                # the first n_trees spheres are trees, the others bushes
    cams: np.ndarray            # [V, 3] float64, camera positions
    axis: np.ndarray            # [V, 3] float64, unit viewing directions
    cos_fov: np.ndarray         # [V] float64, cosine of each camera's half field of view (28..40 degrees)
    ground_lo: np.ndarray       # [2] float64, (x, z) low corner of the ground
    ground_hi: np.ndarray       # [2] float64, (x, z) high corner


def _surroundings(rng, house, occlusion):
    """Trees, bushes, ground extent and cameras around the house (local frame): a `Surroundings`.

    `occlusion` scales the number of trees and bushes (rounded down) and the part of the
    circle around the house that the cameras' arc leaves out (0: a full circle).
    """
    boxes = np.array([w.box for w in house.wings])
    lo, hi = boxes[:, :2].min(0), boxes[:, 2:].max(0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    top = house.vertices[:, 1].max()

    def around(n, gap):  # plan points just outside the house's bounding box
        angle = rng.uniform(0, 2 * np.pi, n)
        direction = np.column_stack([np.cos(angle), np.sin(angle)])
        reach = np.min(half / np.maximum(np.abs(direction), 1e-9), axis=1)
        return centre + direction * (reach + gap)[:, None]

    n_trees = rng.integers(0, 5)
    tree_r = rng.uniform(1.5, 4.0, n_trees)
    tree_xz = around(n_trees, tree_r + rng.uniform(-0.5, 4.0, n_trees))
    trees = np.column_stack([tree_xz[:, 0], tree_r + rng.uniform(0.5, 5.0, n_trees), tree_xz[:, 1]])
    n_bushes = rng.integers(0, 4)
    bush_r = rng.uniform(0.4, 0.9, n_bushes)
    bush_xz = around(n_bushes, bush_r * rng.uniform(0.8, 1.5, n_bushes))
    bushes = np.column_stack([bush_xz[:, 0], bush_r * 0.7, bush_xz[:, 1]])
    n_trees, n_bushes = int(n_trees * occlusion), int(n_bushes * occlusion)  # drawn all the same: one random stream
    trees, tree_r, bushes, bush_r = trees[:n_trees], tree_r[:n_trees], bushes[:n_bushes], bush_r[:n_bushes]

    n_views = rng.integers(3, 9)
    span = rng.uniform(np.radians(100), 2 * np.pi)
    span = span + (2 * np.pi - span) * (1 - occlusion)
    full_circle = span > np.radians(340)  # else the arc's two ends both get a camera
    steps = (np.arange(n_views) + rng.uniform(-0.3, 0.3, n_views)) / (n_views if full_circle else n_views - 1)
    azimuth = rng.uniform(0, 2 * np.pi) + span * steps
    distance = np.linalg.norm(half) * rng.uniform(1.3, 2.4, n_views) + rng.uniform(3.0, 8.0, n_views)
    height = np.where(rng.random(n_views) < 0.3, rng.uniform(5, 15, n_views), rng.uniform(1.6, 2.5, n_views))
    cams = np.column_stack([centre[0] + distance * np.cos(azimuth), height, centre[1] + distance * np.sin(azimuth)])
    target = np.array([centre[0], top * 0.5, centre[1]]) + rng.normal(0, 1.0, (n_views, 3))
    cos_fov = np.cos(np.radians(rng.uniform(28, 40, n_views)))
    ground_lo = lo - rng.uniform(2, 6)
    ground_hi = hi + rng.uniform(2, 6)
    return Surroundings(lo=lo, hi=hi, top=top,
                        sphere_centers=np.vstack([trees, bushes]), sphere_radii=np.concatenate([tree_r, bush_r]),
                        n_trees=n_trees, cams=cams, axis=_unit(target - cams), cos_fov=cos_fov,
                        ground_lo=ground_lo, ground_hi=ground_hi)


def _candidates(rng, house, surroundings, n_sparse, n_depth, noise):
    """Candidate points of both pools, and the line probes (`_line_probes`).

    The candidates: a dict of xyz [M,3], normal, kind, source, window flags, depth below the
    roof (walls; 0 elsewhere), for points drawn on a GT edge that edge and the parameter t
    along it (edge -1 elsewhere), and for points on roof lines their probe (-1 elsewhere).
    `noise` scales the scatter of the corner points and of the ground (0: exactly on them).

    The sparse pool follows COLMAP, which finds corners and roof lines far more than plain
    surfaces; the depth pool is uniform on roof, walls and, thinner, ground and vegetation
    (rarely sampled: they come last in the priority tiers). Each surface's points are drawn
    once for both pools and split between the sources at random.
    """
    centers, radii = surroundings.sphere_centers, surroundings.sphere_radii
    sparse_share = {"roof": 0.13, "wall": 0.08, "ground": 0.02, "tree": 0.03}
    depth_share = {"roof": 0.22, "wall": 0.28, "ground": 0.07, "tree": 0.07}
    count = {part: int(n_sparse * sparse_share[part] + n_depth * depth_share[part]) for part in sparse_share}
    xyz, normal, kind, window, below_roof = {}, {}, {}, {}, {}
    xyz["roof"], normal["roof"] = _roof_points(rng, house, count["roof"])
    xyz["wall"], normal["wall"], window["wall"], below_roof["wall"] = _wall_points(rng, house, count["wall"])
    g0, g1 = surroundings.ground_lo, surroundings.ground_hi
    xz = g0 + rng.random((count["ground"], 2)) * (g1 - g0)
    xz = xz[np.isinf(houses.roof_height(house.wings, xz)[0])]  # not under the house
    xyz["ground"] = np.column_stack([xz[:, 0], rng.normal(0, 0.03, len(xz)) * noise, xz[:, 1]])
    normal["ground"] = np.tile(UP, (len(xz), 1))
    kind.update(roof=ROOF, wall=WALL, ground=GROUND)
    if len(radii):
        xyz["tree"], normal["tree"], which = _sphere_points(rng, centers, radii, count["tree"], 0.3)
        kind["tree"] = np.where(which < surroundings.n_trees, TREE, BUSH)
    if house.chimney is not None:  # split like the roof
        xyz["chimney"], normal["chimney"] = _chimney_points(rng, house, count["roof"] // 50)
        kind["chimney"], sparse_share["chimney"], count["chimney"] = CHIMNEY, sparse_share["roof"], count["roof"]
    source = {part: np.where(rng.random(len(xyz[part])) < n_sparse * sparse_share[part] / count[part],
                             SOURCE_SPARSE, SOURCE_DEPTH) for part in xyz}
    # sparse only: points on the roof lines and at the corners, seen as their probes are
    probes = _line_probes(house)
    edge_xyz, on_edge, along = _edge_points(rng, house, int(n_sparse * rng.uniform(0.35, 0.55)))
    bins = probes["bins"][on_edge]
    probe = {"edge": probes["first"][on_edge] + np.minimum((along * bins).astype(int), bins - 1)}
    vertex = rng.integers(0, len(house.vertices), int(n_sparse * rng.uniform(0.08, 0.15)))
    probe["corner"] = probes["bins"].sum() + vertex
    corner = house.vertices[vertex] + rng.normal(0, 0.1, (len(vertex), 3)) * noise
    for part, points, k in (("edge", edge_xyz, EDGE), ("corner", corner, CORNER)):
        xyz[part], normal[part], kind[part] = points, probes["normal"][probe[part]], k
        source[part] = np.full(len(points), SOURCE_SPARSE)
    parts = list(xyz)
    return {
        "xyz": np.concatenate([xyz[p] for p in parts]),
        "normal": np.concatenate([normal[p] for p in parts]),
        "kind": np.concatenate([np.broadcast_to(kind[p], len(xyz[p])) for p in parts]),
        "source": np.concatenate([source[p] for p in parts]),
        "window": np.concatenate([window.get(p, np.zeros(len(xyz[p]), bool)) for p in parts]),
        "below_roof": np.concatenate([below_roof.get(p, np.zeros(len(xyz[p]))) for p in parts]),
        "edge": np.concatenate([on_edge if p == "edge" else np.full(len(xyz[p]), -1) for p in parts]),
        "t": np.concatenate([along if p == "edge" else np.zeros(len(xyz[p])) for p in parts]),
        "probe": np.concatenate([probe.get(p, np.full(len(xyz[p]), -1)) for p in parts]),
    }, probes


def _views(cand, probes, surroundings, house):
    """`_visibility` of every candidate (with the number of views that see it instead of which);
    points on roof lines take their probe's, computed once."""
    surface = cand["probe"] < 0
    xyz, normal = (np.concatenate([cand[name][surface], probes[name]]) for name in ("xyz", "normal"))
    kind = np.concatenate([cand["kind"][surface], np.full(len(probes["xyz"]), EDGE)])
    seen, n_hidden, frontal, best = _visibility(xyz, normal, kind, surroundings, house)
    index = np.where(surface, np.cumsum(surface) - 1, surface.sum() + cand["probe"])
    return seen.sum(0)[index], n_hidden[index], frontal[index], best[index]


def _visibility(xyz, normal, kind, surroundings, house):
    """Which views see each point: seen [V, M], in how many views a tree or bush hides it [M],
    the cosine of its most frontal view's incidence [M] (grazing views sample a surface
    thinly) and that view [M] (a depth point's depth map; the ray of a sparse point's noise).

    Seen = facing the camera, inside its field of view, not behind a tree or bush sphere,
    and for ground and vegetation not behind the house's main box. This is the hot loop, in
    float32: every test is a [V, M] array of dot products from matrix products (views first,
    so numpy's inner loops run over the long point axis), never a [V, M, 3] array.
    """
    f32 = np.float32
    p, normal = xyz.astype(f32), normal.astype(f32)
    cams, axis = surroundings.cams.astype(f32), surroundings.axis.astype(f32)
    cos_fov = surroundings.cos_fov.astype(f32)
    cam_p = _dots(cams, p)  # [V, M]
    q = np.einsum("mk,mk->m", p, p) - cam_p  # (p - cam) . p
    dist2 = np.maximum(q - cam_p + np.einsum("vk,vk->v", cams, cams)[:, None], f32(1e-6))
    dist = np.sqrt(dist2)
    cos_incidence = (_dots(cams, normal) - np.einsum("mk,mk->m", normal, p)) / dist
    in_view = _dots(axis, p) - np.einsum("vk,vk->v", cams, axis)[:, None] > cos_fov[:, None] * dist
    looked_at = (cos_incidence > 0.05) & in_view
    hidden = np.zeros_like(looked_at)
    # a sphere (c, r) hides p from a camera if, with A = (c - p) . (cam - p), 0 < A < |cam - p|^2
    # and the ray passes within r of c: |c - p|^2 - A^2 / |cam - p|^2 < r^2. When every
    # camera is above the sphere's top, only points below its top can be behind it (bushes).
    for c, r in zip(surroundings.sphere_centers.astype(f32), surroundings.sphere_radii.astype(f32)):
        top = c[1] + r
        cols = np.flatnonzero(p[:, 1] < top) if (cams[:, 1] > top).all() else slice(None)
        a = q[:, cols] + (_dots(cams, c[None]) - _dots(c[None], p[cols]))
        off_ray = (np.einsum("mk,mk->m", p[cols] - c, p[cols] - c) - r * r) * dist2[:, cols]
        hidden[:, cols] |= (a > 0) & (a < dist2[:, cols]) & (a * a > off_ray)
    # ground, trees and bushes behind the house's main box are hidden by it (slab test)
    outside = np.flatnonzero(~np.isin(kind, HOUSE_KINDS))
    if len(outside):
        lo = (surroundings.lo[0], 0.0, surroundings.lo[1])
        hi = (surroundings.hi[0], house.vertices[:, 1].min(), surroundings.hi[1])
        enter = np.full((len(cams), len(outside)), -np.inf, f32)
        leave = np.full((len(cams), len(outside)), np.inf, f32)
        for k in range(3):
            x = p[outside, k]
            step = cams[:, k, None] - x
            step[np.abs(step) < 1e-6] = 1e-6
            t0, t1 = (f32(lo[k]) - x) / step, (f32(hi[k]) - x) / step  # ray parameter, 0 at the point, 1 at the camera
            enter, leave = np.maximum(enter, np.minimum(t0, t1)), np.minimum(leave, np.maximum(t0, t1))
        hidden[:, outside] |= (enter < leave) & (leave > 0) & (enter < 1)
    seen = looked_at & ~hidden
    frontal = cos_incidence * seen
    best = frontal.argmax(0)
    return seen, (looked_at & hidden).sum(0), frontal[best, np.arange(len(best))], best


def _segment_distances(points, a, b):
    """Distances [E, M] from points [M, 3] to segments a -> b [E, 3] and the closest
    parameters t in [0, 1] [E, M], by dot products (see `_visibility`)."""
    d = b - a
    dd = np.maximum(np.einsum("ek,ek->e", d, d), 1e-12)[:, None]
    pd = _dots(d, points) - np.einsum("ek,ek->e", a, d)[:, None]
    t = np.clip(pd / dd, 0, 1)
    pa = np.einsum("mk,mk->m", points, points) - 2 * _dots(a, points) + np.einsum("ek,ek->e", a, a)[:, None]
    return np.sqrt(np.maximum(pa - 2 * t * pd + t * t * dd, 0)), t


def _true_labels(rng, house, cand, wall_gestalt, r_vertex, r_edge, label_errors):
    """True point class, an alternative class (the likely confusion) and a fine gestalt id.

    A house point within r_vertex of a GT vertex takes the vertex's kind, else within r_edge
    of a GT edge the edge's point class, as the gestalt masks would paint them, except where
    the segmentation missed the corner or a stretch of the line (the label falls back to roof
    or wall there; `label_errors` scales how often). Points drawn on a GT edge know their
    edge and need no search.
    """
    kind = cand["kind"]
    n = len(kind)
    cls = np.full(n, POINT_CLASS["non_house"])
    gestalt = np.full(n, GESTALT["unclassified"])
    house_pt = np.isin(kind, HOUSE_KINDS)
    cls[house_pt] = POINT_CLASS["other_house"]
    gestalt[house_pt] = wall_gestalt[house_pt]
    on_roof = np.isin(kind, (ROOF, EDGE, CORNER))
    cls[on_roof] = POINT_CLASS["roof"]
    # the likely confusion: roof <-> wall near the eaves, wall <-> ground and vegetation lower down
    alt = np.select([on_roof, house_pt & (cand["below_roof"] < 1.0), house_pt],
                    [POINT_CLASS["other_house"], POINT_CLASS["roof"], POINT_CLASS["non_house"]],
                    POINT_CLASS["other_house"])
    vertices, edges = house.vertices.astype(np.float32), house.edges
    length = np.linalg.norm(vertices[edges[:, 1]] - vertices[edges[:, 0]], axis=1)
    line_painted = (rng.random((len(edges), int(np.ceil(length.max() / STRETCH))))
                    < _fewer_errors(rng.uniform(0.6, 0.95), label_errors))
    corner_painted = rng.random(len(vertices)) < _fewer_errors(rng.uniform(0.6, 0.95), label_errors)
    idx = np.flatnonzero(house_pt & (cand["below_roof"] < r_vertex + 0.1))  # only these can be near the wireframe
    if len(idx):
        q, columns = cand["xyz"][idx].astype(np.float32), np.arange(len(idx))
        dv = np.sqrt(np.maximum(np.einsum("mk,mk->m", q, q) - 2 * _dots(vertices, q)
                                + np.einsum("nk,nk->n", vertices, vertices)[:, None], 0))  # [N, M]
        nearest_vertex = dv.argmin(0)
        nearest_edge, t, d_edge = cand["edge"][idx], cand["t"][idx], np.zeros(len(idx), np.float32)
        search = np.flatnonzero(nearest_edge < 0)
        de, te = _segment_distances(q[search], vertices[edges[:, 0]], vertices[edges[:, 1]])  # [E, searched]
        found, searched = de.argmin(0), np.arange(len(search))
        nearest_edge[search], d_edge[search], t[search] = found, de[found, searched], te[found, searched]
        stretch = np.minimum((t * length[nearest_edge] / STRETCH).astype(int), line_painted.shape[1] - 1)
        at_edge = (d_edge < r_edge) & line_painted[nearest_edge, stretch]
        at_vertex = (dv[nearest_vertex, columns] < r_vertex) & corner_painted[nearest_vertex]
        edge_cls = EDGE_POINT_CLASS[house.edge_classes[nearest_edge]]
        c = np.where(at_vertex, house.vertex_kinds[nearest_vertex], np.where(at_edge, edge_cls, cls[idx]))
        a = np.where(at_vertex, edge_cls, np.where(at_edge, POINT_CLASS["roof"], alt[idx]))
        a = np.where(~at_edge & (d_edge < 3 * r_edge), edge_cls, a)  # roof points near a line
        cls[idx], alt[idx] = c, a
        gestalt[idx] = np.where(c <= POINT_CLASS["roof"], CLASS_GESTALT[c], gestalt[idx])
    return cls, alt, gestalt


def _vote(rng, true, alt, n_views, p_right):
    """Per-view votes: right with p_right, else half the time the alternative, else a stray class.

    Returns (winning class, fraction of votes for it)."""
    u = rng.random((int(n_views.max()), len(true)), dtype=np.float32)  # [views, points]
    counted = np.arange(len(u))[:, None] < n_views
    right = ((u < p_right) & counted).sum(0)
    wrong = ((u >= p_right) & (u < (1 + p_right) / 2) & counted).sum(0)
    stray = _pick(rng, STRAY_VOTE, len(true))  # wins only if every vote strayed
    top = np.maximum(right, wrong)
    winner = np.where(top == 0, stray, np.where(right >= wrong, true, alt))
    return winner, (np.maximum(top, 1) / n_views).astype(np.float32)


def generate_scene(seed, index, split, world=None):
    """One synthetic scene: the fused cloud (all points, metres, world frame) and its GT.

    Its content depends only on (seed, split, index) and the `world` (a `World`, a mapping
    of some of its keys, or None: full difficulty). Returns a dict with order_id,
    footprint, roof, xyz [M,3] float64, the per-point fields of the schema for all M points,
    center, scale, gt_vertices, gt_edges, gt_edge_classes, gt_vertex_kinds, and the pose
    `rotation` [3,3] and `offset` [3] (world frame = rotation @ house-local + offset).
    """
    if not (isinstance(index, (int, np.integer)) and index >= 0):
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    if not (isinstance(seed, (int, np.integer)) and seed >= 0):
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    world = World.of(world)
    rng = scene_rng(seed, index, split)
    house = houses.random_house(rng, footprints=world.footprints, roofs=world.roofs, extras=world.extras)
    surroundings = _surroundings(rng, house, world.occlusion)

    # what the cameras see: sparse points need two views (triangulation), depth points one,
    # thinned by the incidence of their most frontal view
    n_sparse = np.exp(rng.uniform(np.log(5000), np.log(25000)))  # the feature yield varies by scene
    cand, probes = _candidates(rng, house, surroundings, int(n_sparse), int(rng.uniform(6000, 10000)), world.noise)
    n_seen, n_hidden, frontal, view = _views(cand, probes, surroundings, house)
    keep = np.where(cand["source"] == SOURCE_SPARSE, n_seen >= 2, rng.random(len(n_seen)) < frontal)
    keep &= ~_holes(rng, cand["xyz"], cand["source"], house, world.occlusion)
    cand = {k: v[keep] for k, v in cand.items() if k not in ("normal", "probe")}
    fields = _labels(rng, house, surroundings, cand, n_seen[keep], n_hidden[keep], world.label_errors)

    xyz = _add_noise(rng, cand["xyz"], cand["source"], view[keep], n_seen[keep], surroundings,
                     world.noise, world.outliers)
    xyz, fields = _add_outliers(rng, xyz, fields, surroundings, world.outliers)

    # world frame: a yaw about Y and a position
    yaw = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(yaw), np.sin(yaw)
    rotation = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    offset = np.array([rng.uniform(-30, 30), rng.uniform(-3, 3), rng.uniform(-30, 30)])
    xyz = _dots(rotation, xyz).T + offset
    center, scale = normalisation(xyz[fields["source"] == SOURCE_DEPTH])
    scene = {
        "order_id": f"syn-{split}-{index:06d}", "footprint": house.footprint, "roof": house.roof, "xyz": xyz,
        "center": center, "scale": scale,
        "gt_vertices": (_dots(rotation, house.vertices).T + offset).astype(np.float32),
        "gt_edges": house.edges, "gt_edge_classes": house.edge_classes, "gt_vertex_kinds": house.vertex_kinds,
        "rotation": rotation, "offset": offset,
    }
    scene.update({name: value.astype(ARRAY_FIELDS[name][0]) for name, value in fields.items()})
    return scene


def scene_rng(seed, index, split):
    """The random stream of one scene; its first draws make the house (`houses.random_house`)."""
    return np.random.default_rng([int(seed), _split_code(split), int(index)])


def _holes(rng, xyz, source, house, occlusion):
    """Candidates lost in a few blobs: depth-map failures (glass, sky) and textureless patches.

    `occlusion` scales the blobs' radii (0: no holes)."""
    n_holes = rng.integers(0, 5, 2)  # depth, sparse
    centres = house.vertices[rng.integers(0, len(house.vertices), n_holes.sum())]
    centres = centres + rng.normal(0, 2.0, centres.shape)
    radius = rng.uniform(0.8, 2.5, n_holes.sum()) * occlusion
    pool = np.repeat([SOURCE_DEPTH, SOURCE_SPARSE], n_holes)
    d2 = np.einsum("mk,mk->m", xyz, xyz) - 2 * _dots(centres, xyz) + np.einsum("hk,hk->h", centres, centres)[:, None]
    return ((d2 < radius[:, None] ** 2) & (pool[:, None] == source)).any(0)


def _labels(rng, house, surroundings, cand, n_seen, n_hidden, label_errors):
    """The per-point label fields of the schema for the kept candidates.

    class_id and vote_frac come from per-view votes around the true label (`label_errors`
    scales the chance of a wrong vote and of a segmentation miss); `behind` is an
    independent vote (the gestalt label behind the point); visible_src/visible_id say what
    the views saw at the point: its gestalt label, or the occluder (tree, bush, ground).
    """
    kind = cand["kind"]
    material = GESTALT[WALL_MATERIALS[rng.integers(len(WALL_MATERIALS))]]
    wall_gestalt = np.where(cand["window"], GESTALT["window"], np.where(kind == CHIMNEY, GESTALT["brick"], material))
    true, alt, gestalt = _true_labels(rng, house, cand, wall_gestalt,
                                      r_vertex=rng.uniform(0.25, 0.5), r_edge=rng.uniform(0.15, 0.35),
                                      label_errors=label_errors)
    p_right = np.full(len(kind), rng.uniform(0.45, 0.8), np.float32)
    p_right[true <= POINT_CLASS["flashing_end_point"]] *= 0.85
    p_right = _fewer_errors(p_right, label_errors)
    class_id, vote_frac = _vote(rng, true, alt, n_seen, p_right)
    behind_cls, _ = _vote(rng, true, alt, n_seen, p_right)
    behind = np.where(behind_cls == true, gestalt, CLASS_GESTALT[behind_cls])

    is_house = np.isin(kind, HOUSE_KINDS)
    behind[~is_house] = GESTALT["unclassified"]
    vegetation = np.flatnonzero((kind == TREE) | (kind == BUSH))
    behind[vegetation] = _behind_occluder(cand["xyz"][vegetation], surroundings, house, material)
    hidden_more = is_house & (n_hidden > n_seen)  # most views saw a tree or bush in front
    visible = is_house & ~hidden_more
    visible_id = np.select([visible, hidden_more, kind == TREE, kind == BUSH],
                           [CLASS_GESTALT[class_id], OCCLUDER["tree"], OCCLUDER["tree"], OCCLUDER["bush"]],
                           OCCLUDER[("grass", "road")[rng.integers(2)]])
    visible_id = np.where(visible & (class_id == POINT_CLASS["other_house"]), gestalt, visible_id)
    return {
        "class_id": class_id, "source": cand["source"], "behind": behind,
        "visible_src": np.where(visible, VISIBLE_GESTALT, VISIBLE_OCCLUDER), "visible_id": visible_id,
        "n_views_voted": n_seen, "vote_frac": vote_frac,
    }


def _behind_occluder(xyz, surroundings, house, material):
    """Gestalt class behind vegetation points, seen from the mean camera: roof, wall or nothing."""
    view = _unit(xyz - surroundings.cams.mean(0)) + 1e-12
    lo = np.array([surroundings.lo[0], 0.0, surroundings.lo[1]])
    hi = np.array([surroundings.hi[0], surroundings.top, surroundings.hi[1]])
    t0, t1 = (lo - xyz) / view, (hi - xyz) / view
    enter, leave = np.minimum(t0, t1).max(-1), np.maximum(t0, t1).min(-1)
    hit = (enter < leave) & (leave > 0)
    y = xyz[:, 1] + np.maximum(enter, 0) * view[:, 1]
    return np.where(hit, np.where(y > house.vertices[:, 1].min(), GESTALT["roof"], material), GESTALT["unclassified"])


def _add_noise(rng, xyz, source, view, n_seen, surroundings, noise, outliers):
    """Sparse: isotropic noise plus as much again along the ray, larger with fewer views, with
    a heavy tail. Depth: a per-view depth-scale bias along the ray plus isotropic noise, and
    a few flying pixels slid toward their camera. `noise` scales the noise (0: none),
    `outliers` the share of flying pixels."""
    n = len(xyz)
    to_cam = surroundings.cams[view] - xyz
    sparse = source == SOURCE_SPARSE
    sigma = np.exp(rng.uniform(np.log(0.03), np.log(0.25))) * (1 + 1.5 / n_seen) * np.where(rng.random(n) < 0.07, 3, 1)
    sigma = sigma * noise
    depth_bias = rng.normal(0, rng.uniform(0.01, 0.04), len(surroundings.cams))[view] * noise
    isotropic = np.where(sparse, sigma, rng.uniform(0.03, 0.15) * noise)
    along = np.where(sparse, rng.normal(size=n) * sigma / np.linalg.norm(to_cam, axis=1), -depth_bias)
    out = xyz + rng.normal(size=(n, 3)) * isotropic[:, None] + to_cam * along[:, None]
    u, rate = rng.random(n), rng.uniform(0.005, 0.03)
    flying = np.flatnonzero(~sparse & (u < rate))
    slide = rng.uniform(0.02, 0.25, (len(flying), 1))  # drawn for all: the stream goes on alike at any `outliers`
    kept = u[flying] < rate * outliers
    flying, slide = flying[kept], slide[kept]
    out[flying] += (surroundings.cams[view[flying]] - out[flying]) * slide
    return out


def _add_outliers(rng, xyz, fields, surroundings, outliers):
    """Sparse outliers: uniform in a box around the house, with unreliable random labels.

    `outliers` is the share of them kept (all are drawn: the random stream goes on alike)."""
    n = int((fields["source"] == SOURCE_SPARSE).sum() * rng.uniform(0.01, 0.06))
    lo = np.array([surroundings.lo[0], 0.0, surroundings.lo[1]]) - 3
    hi = np.array([surroundings.hi[0], surroundings.top, surroundings.hi[1]]) + 3
    extra = {
        "class_id": rng.integers(0, len(POINT_CLASSES), n), "source": np.full(n, SOURCE_SPARSE),
        "behind": rng.integers(0, NUM_BEHIND_CLASSES, n), "visible_src": np.full(n, VISIBLE_NONE),
        "visible_id": np.zeros(n, np.int64), "n_views_voted": rng.integers(1, 3, n),
        "vote_frac": rng.uniform(0.3, 1.0, n),
    }
    extra_xyz = lo + rng.random((n, 3)) * (hi - lo)
    kept = int(n * outliers)
    xyz = np.vstack([xyz, extra_xyz[:kept]])
    return xyz, {k: np.concatenate([v, extra[k][:kept]]) for k, v in fields.items()}


def normalisation(depth_xyz, k=2.5):
    """(center float32 [3], scale float32): the centre and diagonal of a robust box of the depth points.

    Median, keep points within k MADs of it on every axis, then the 2.5..97.5 percentile box.
    """
    if len(depth_xyz) < 10:
        raise ValueError(f"normalisation needs at least 10 depth points, got {len(depth_xyz)}")
    columns = np.ascontiguousarray(depth_xyz.T)  # [3, M]: numpy reduces long rows much faster
    median = np.median(columns, axis=1, keepdims=True)
    deviation = np.abs(columns - median)
    inlier = (deviation <= k * np.maximum(np.median(deviation, axis=1, keepdims=True), 1e-6)).all(0)
    lo, hi = np.percentile(columns[:, inlier], [2.5, 97.5], axis=1)
    return ((lo + hi) / 2).astype(np.float32), np.float32(np.linalg.norm(hi - lo))
