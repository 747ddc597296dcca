"""Procedural houses: roof volumes and their exact roof wireframe, in a house-local frame.

Metres, Y up, ground at y = 0; the main wing runs along x, centred on the origin.

Every roof is a union of *wings*: an axis-aligned plan box whose roof is the lowest of a
few planes (a convex roof). The roof height anywhere is therefore the highest wing's
lowest plane, which is what `roof_height` computes for the point-cloud simulation. The
wireframe of each family is written down analytically as a soup of classified segments
(a side wing of equal eave height meets the main roof along two straight valleys), then
`wireframe` turns the soup into a clean graph: coincident endpoints merged, edges split
where another edge ends on them (a ridge meeting a ridge), duplicates dropped and collinear
pieces of one class joined back into one edge.

Footprints: rect, L, T, U (side wings on the main wing's long sides). Roofs: gable, hip,
pyramid, flat, shed on rectangles; cross_gable, cross_hip, flat on L/T/U. Extras: a chimney
(flashing and step flashing around its base), a lean-to against an end wall (flashing
where it meets the wall), a detached garage.
"""

from dataclasses import dataclass

import numpy as np

from ..schema import EDGE_CLASS, MAX_GT_EDGES, POINT_CLASS

FOOTPRINTS = ("rect", "L", "T", "U")
RECT_ROOFS = ("gable", "hip", "pyramid", "flat", "shed")
WING_ROOFS = ("cross_gable", "cross_hip", "flat")
ROOFS = RECT_ROOFS + WING_ROOFS[:2]  # every roof kind

#: How often each footprint is drawn, and each roof on a rectangle or on a winged (L, T, U) footprint.
FOOTPRINT_WEIGHTS = {"rect": 0.4, "L": 0.2, "T": 0.2, "U": 0.2}
RECT_ROOF_WEIGHTS = {"gable": 0.3, "hip": 0.25, "pyramid": 0.12, "flat": 0.15, "shed": 0.18}
WING_ROOF_WEIGHTS = {"cross_gable": 0.5, "cross_hip": 0.35, "flat": 0.15}

#: Endpoints closer than this (metres) are one vertex.
TOLERANCE = 1e-6


@dataclass
class Wing:
    """A roof volume: plan box (x0, z0, x1, z1); roof y = min over rows (a, b, c) of a*x + b*z + c.

    `walls` says which box sides stand on the ground as walls, in the order x0, x1, z0, z1
    (a side wing's inner end is open into the main wing).
    """

    box: np.ndarray
    planes: np.ndarray
    walls: tuple


@dataclass
class House:
    footprint: str
    roof: str
    wings: list
    vertices: np.ndarray       # [N, 3] float64, metres
    edges: np.ndarray          # [E, 2] int64
    edge_classes: np.ndarray   # [E] int64, schema.EDGE_CLASSES ids
    vertex_kinds: np.ndarray   # [N] uint8, point class of the vertex (apex, eave_end_point, flashing_end_point)
    chimney: np.ndarray | None  # (x0, z0, x1, z1, top y) or None
    overhang: float            # walls stand this far inside the roof outline


def wing_roof(wing, x, z):
    """The wing's roof over plan points (x [M], z [M]), ignoring its box: (height [M], plane index [M]).

    One plane at a time on 1-D arrays, which numpy runs much faster than [M, K] arrays with a short K.
    """
    top, k = np.full(len(x), np.inf), np.zeros(len(x), int)
    for j, (a, b, c) in enumerate(wing.planes):
        value = a * x + b * z + c
        lower = value < top
        top[lower], k[lower] = value[lower], j
    return top, k


def roof_height(wings, xz):
    """Roof height at plan points xz [M, 2].

    Returns height [M] (-inf off the roof), slope [M, 2] (dy/dx, dy/dz) and wing [M] (-1 off).
    """
    x, z = np.ascontiguousarray(xz[:, 0]), np.ascontiguousarray(xz[:, 1])
    height = np.full(len(x), -np.inf)
    slope = np.zeros((len(x), 2))
    owner = np.full(len(x), -1)
    for w, wing in enumerate(wings):
        x0, z0, x1, z1 = wing.box + (-TOLERANCE, -TOLERANCE, TOLERANCE, TOLERANCE)
        idx = np.flatnonzero((x >= x0) & (x <= x1) & (z >= z0) & (z <= z1))
        top, k = wing_roof(wing, x[idx], z[idx])
        higher = top > height[idx]
        idx, top, k = idx[higher], top[higher], k[higher]
        height[idx], slope[idx], owner[idx] = top, wing.planes[k, :2], w
    return height, slope, owner


# ---------------------------------------------------------------------------------------
# The wireframe graph


def wireframe(segments):
    """Segment soup [(p, q, edge class name)] -> (vertices [N,3], edges [E,2], classes [E], vertex kinds [N])."""
    ends = np.array([(p, q) for p, q, _ in segments], dtype=np.float64).reshape(-1, 3)
    classes = np.array([EDGE_CLASS[c] for _, _, c in segments], dtype=np.int64)
    vertices, inverse = _merge_points(ends)
    edges = inverse.reshape(-1, 2)
    edges, classes = _split_at_vertices(vertices, edges, classes)
    edges, classes = _drop_degenerate_and_duplicates(edges, classes)
    edges, classes = _join_collinear(vertices, edges, classes)
    used, edges = np.unique(edges, return_inverse=True)
    vertices, edges = vertices[used], edges.reshape(-1, 2).astype(np.int64)
    return vertices, edges, classes, _vertex_kinds(len(vertices), edges, classes)


def _merge_points(points):
    """Unique points up to TOLERANCE: (unique [N,3], inverse index [M])."""
    close = np.linalg.norm(points[:, None] - points[None], axis=-1) < TOLERANCE
    first = close.argmax(1)  # the lowest index within tolerance represents its cluster
    representatives, inverse = np.unique(first, return_inverse=True)
    return points[representatives], inverse


def _split_at_vertices(vertices, edges, classes):
    """Split every edge at the vertices that lie strictly inside it (T-junctions)."""
    a, b = vertices[edges[:, 0]], vertices[edges[:, 1]]
    d = b - a
    t = np.einsum("enk,ek->en", vertices[None] - a[:, None], d) / np.einsum("ek,ek->e", d, d)[:, None]
    foot = a[:, None] + t[..., None] * d[:, None]
    on = (np.linalg.norm(vertices[None] - foot, axis=-1) < TOLERANCE) & (t > 1e-9) & (t < 1 - 1e-9)
    if not on.any():
        return edges, classes
    out_edges, out_classes = [], []
    for e in range(len(edges)):
        inner = np.flatnonzero(on[e])
        chain = [edges[e, 0], *inner[np.argsort(t[e, inner])], edges[e, 1]]
        out_edges += list(zip(chain[:-1], chain[1:]))
        out_classes += [classes[e]] * (len(chain) - 1)
    return np.array(out_edges, dtype=np.int64), np.array(out_classes, dtype=np.int64)


def _drop_degenerate_and_duplicates(edges, classes):
    keep = edges[:, 0] != edges[:, 1]
    edges, classes = np.sort(edges[keep], axis=1), classes[keep]
    _, first = np.unique(edges, axis=0, return_index=True)
    first.sort()
    return edges[first], classes[first]


def _join_collinear(vertices, edges, classes):
    """Join two edges of one class that meet in line at a vertex no other edge touches."""
    edges, classes = edges.tolist(), classes.tolist()
    changed = True
    while changed:
        changed = False
        degree = np.bincount(np.ravel(edges), minlength=len(vertices))
        for v in np.flatnonzero(degree == 2):
            i, j = (k for k, e in enumerate(edges) if v in e)
            if classes[i] != classes[j]:
                continue
            u, w = (e[0] if e[1] == v else e[1] for e in (edges[i], edges[j]))
            d1, d2 = vertices[v] - vertices[u], vertices[w] - vertices[v]
            if d1 @ d2 < (1 - 1e-12) * np.sqrt((d1 @ d1) * (d2 @ d2)):  # not in line
                continue
            edges[i] = sorted((u, w))
            del edges[j], classes[j]
            changed = True
            break
    return np.array(edges, dtype=np.int64).reshape(-1, 2), np.array(classes, dtype=np.int64)


def _vertex_kinds(n, edges, classes):
    """flashing_end_point if a (step) flashing ends there, else eave_end_point if an eave does, else apex."""
    kinds = np.full(n, POINT_CLASS["apex"], dtype=np.uint8)
    eave = classes == EDGE_CLASS["eave"]
    flashing = np.isin(classes, (EDGE_CLASS["flashing"], EDGE_CLASS["step_flashing"]))
    kinds[edges[eave].ravel()] = POINT_CLASS["eave_end_point"]
    kinds[edges[flashing].ravel()] = POINT_CLASS["flashing_end_point"]
    return kinds


# ---------------------------------------------------------------------------------------
# Roof families. Each builder returns (wings, segments) for a wing along x, centred at 0.


def _rect_roof(kind, L, W, H, t):
    """One rectangular wing L (along x) by W (along z), eave height H, slope t = tan(pitch)."""
    x, z = L / 2, W / 2
    ridge_y = H + t * z
    corners = [(-x, H, -z), (x, H, -z), (x, H, z), (-x, H, z)]
    eaves = [(corners[i], corners[(i + 1) % 4], "eave") for i in range(4)]
    if kind == "flat":
        planes, segments = [(0, 0, H)], eaves
    elif kind == "shed":  # low eave at z = +W/2, high edge at z = -W/2
        top = H + t * W
        planes = [(0, -t, H + t * z)]
        segments = [(corners[2], corners[3], "eave"), ((-x, top, -z), (x, top, -z), "ridge"),
                    (corners[3], (-x, top, -z), "rake"), (corners[2], (x, top, -z), "rake")]
    elif kind == "gable":
        planes = [(0, t, H + t * z), (0, -t, H + t * z)]
        ends = [(-x, ridge_y, 0), (x, ridge_y, 0)]
        segments = [eaves[0], eaves[2], (ends[0], ends[1], "ridge"),
                    (corners[0], ends[0], "rake"), (corners[3], ends[0], "rake"),
                    (corners[1], ends[1], "rake"), (corners[2], ends[1], "rake")]
    elif kind == "hip":  # needs L > W
        planes = [(0, t, H + t * z), (0, -t, H + t * z), (t, 0, H + t * x), (-t, 0, H + t * x)]
        ends = [(-(x - z), ridge_y, 0), (x - z, ridge_y, 0)]
        segments = eaves + [(ends[0], ends[1], "ridge"),
                            (corners[0], ends[0], "hip"), (corners[3], ends[0], "hip"),
                            (corners[1], ends[1], "hip"), (corners[2], ends[1], "hip")]
    elif kind == "pyramid":  # the end faces are flatter when L > W: all meet at one apex
        t_end = t * z / x
        planes = [(0, t, H + t * z), (0, -t, H + t * z), (t_end, 0, H + t_end * x), (-t_end, 0, H + t_end * x)]
        apex = (0, ridge_y, 0)
        segments = eaves + [(c, apex, "hip") for c in corners]
    else:
        raise ValueError(f"unknown rectangular roof kind {kind!r}; expected one of {RECT_ROOFS}")
    wing = Wing(np.array([-x, -z, x, z]), np.array(planes, dtype=np.float64), (True, True, True, True))
    return [wing], segments


def _side_wing(kind, main_W, H, main_t, side, xb, w, length, depth):
    """A wing along z on side `side` (+1/-1) of a main wing of width main_W, centred at x = xb.

    It is w wide, reaches `length` beyond the main eave and its ridge runs `depth` into the
    main roof (depth = main_W / 2: the two ridges meet). Its gable/hip slope follows from the
    depth: equal eave heights make the valleys straight lines from the eave corners to the
    ridge's inner end. kind: gable, hip or flat (flat: depth 0, eaves only).
    """
    s, e = side, main_W / 2
    far = e + length
    x0, x1 = xb - w / 2, xb + w / 2
    feet = [(x0, H, s * e), (x1, H, s * e)]
    far_corners = [(x0, H, s * far), (x1, H, s * far)]
    segments = [(feet[i], far_corners[i], "eave") for i in range(2)]
    z_in = s * (e - depth)
    box = np.array([x0, min(z_in, s * far), x1, max(z_in, s * far)])
    walls = (True, True, side < 0, side > 0)
    if kind == "flat":
        return Wing(box, np.array([(0, 0, H)], dtype=np.float64), walls), segments + [(*far_corners, "eave")]
    t = 2 * depth * main_t / w
    ridge_y = H + t * w / 2
    inner = (xb, ridge_y, z_in)
    planes = [(t, 0, H + t * (w / 2 - xb)), (-t, 0, H + t * (w / 2 + xb))]
    if kind == "hip":
        outer = (xb, ridge_y, s * (far - w / 2))
        planes.append((0, -s * t, H + t * far))
        segments += [(*far_corners, "eave"), (far_corners[0], outer, "hip"), (far_corners[1], outer, "hip")]
    elif kind == "gable":
        outer = (xb, ridge_y, s * far)
        segments += [(far_corners[0], outer, "rake"), (far_corners[1], outer, "rake")]
    else:
        raise ValueError(f"unknown side wing kind {kind!r}; expected gable, hip or flat")
    segments += [(inner, outer, "ridge"), (feet[0], inner, "valley"), (feet[1], inner, "valley")]
    return Wing(box, np.array(planes, dtype=np.float64), walls), segments


def _eave_pieces(L, side_z, H, gaps):
    """The main wing's eave along z = side_z, with the wings' attachment intervals cut out."""
    pieces, x = [], -L / 2
    for g0, g1 in sorted(gaps):
        if g0 - x > TOLERANCE:
            pieces.append(((x, H, side_z), (g0, H, side_z), "eave"))
        x = g1
    if L / 2 - x > TOLERANCE:
        pieces.append(((x, H, side_z), (L / 2, H, side_z), "eave"))
    return pieces


def _winged_roof(rng, footprint, kind, L, W, H, t):
    """Main wing (gable, hip or flat) plus 1 (L, T) or 2 (U) perpendicular side wings."""
    main_kind = {"cross_gable": "gable", "cross_hip": "hip", "flat": "flat"}[kind]
    wings, segments = _rect_roof(main_kind, L, W, H, t)
    # the long eaves are rebuilt below with the wings' attachments cut out
    segments = [s for s in segments if not (s[2] == "eave" and abs(s[0][2] - s[1][2]) < TOLERANCE)]
    side = rng.choice((-1, 1))
    # hips need a margin between a wing and the main end; gables and flats may be flush
    margin = rng.uniform(0.6, 1.8) if main_kind == "hip" else 0.0
    n_wings = 2 if footprint == "U" else 1
    w_max = min(W, (L - 2 * margin - 1.5) / n_wings)
    placements = []
    for i in range(n_wings):
        w = rng.uniform(0.55, 1.0) * w_max
        if footprint == "T":
            slack = L / 2 - margin - w / 2
            xb = rng.uniform(-0.4, 0.4) * slack
        else:
            end = (-1, 1)[i] if footprint == "U" else rng.choice((-1, 1))
            xb = end * (L / 2 - margin - w / 2)
        placements.append((xb, w))
    gaps = []
    for xb, w in placements:
        length = rng.uniform(2.5, 9.0) + (w / 2 if main_kind == "hip" else 0)
        depth = 0.0 if main_kind == "flat" else _wing_depth(rng, main_kind, L, W, t, xb, w)
        wing, wing_segments = _side_wing(main_kind, W, H, t, side, xb, w, length, depth)
        wings.append(wing)
        segments += wing_segments
        gaps.append((xb - w / 2, xb + w / 2))
    segments += _eave_pieces(L, side * W / 2, H, gaps) + _eave_pieces(L, -side * W / 2, H, [])
    return wings, segments


def _wing_depth(rng, main_kind, L, W, t, xb, w):
    """How far a side wing's ridge runs into the main roof (sets its pitch; <= W/2 keeps it lower)."""
    room = L / 2 - abs(xb)  # a hip main: the valleys must stay on its side face
    deepest = W / 2 if main_kind == "gable" or room >= W / 2 else room - 0.4
    lo = w * np.tan(np.radians(15)) / (2 * t)
    hi = min(deepest, w * np.tan(np.radians(55)) / (2 * t))
    u = rng.random()
    if u < 0.45 and lo <= w / 2 <= hi:
        return w / 2  # the main roof's pitch
    if u < 0.7 or lo >= hi:
        return hi  # as high as allowed: ridges meet when hi == W/2
    return rng.uniform(lo, hi)


def _chimney(rng, wings, W, L):
    """A chimney box on the main wing's roof, wholly on one roof face, or None."""
    x_main, z_main = L / 2, W / 2
    for _ in range(6):
        cx, cz = rng.uniform(0.5, 1.2, 2)
        x0 = rng.uniform(-x_main + 0.5, x_main - 0.5 - cx)
        z0 = rng.uniform(-z_main + 0.5, z_main - 0.5 - cz)
        corners = np.array([(x0, z0), (x0 + cx, z0), (x0 + cx, z0 + cz), (x0, z0 + cz)])
        grid = np.stack(np.meshgrid(np.linspace(x0 - 0.2, x0 + cx + 0.2, 4),
                                    np.linspace(z0 - 0.2, z0 + cz + 0.2, 4)), -1).reshape(-1, 2)
        height, slope, owner = roof_height(wings, np.vstack([corners, grid]))
        if (owner == 0).all() and np.ptp(slope, axis=0).max() < TOLERANCE:
            base = height[:4]
            top = base.max() + rng.uniform(0.6, 1.5)
            pts = [(x, y, z) for (x, z), y in zip(corners, base)]
            segments = []
            for i in range(4):
                p, q = pts[i], pts[(i + 1) % 4]
                sloped = abs(p[1] - q[1]) > TOLERANCE
                segments.append((p, q, "step_flashing" if sloped else "flashing"))
            return np.array([x0, z0, x0 + cx, z0 + cz, top]), segments
    return None, []


def _lean_to(rng, L, W, H, end):
    """A mono-pitch roof against the main wing's end wall (x = end * L/2), or nothing if too low."""
    if H <= 3.0:
        return [], []
    top = rng.uniform(2.7, H - 0.3)
    depth = rng.uniform(1.8, 4.0)
    t = np.tan(np.radians(rng.uniform(8, 20)))
    low = top - depth * t
    if low < 2.0:
        return [], []
    width = rng.uniform(0.4, 0.9) * (W - 0.6)
    zc = rng.uniform(-1, 1) * (W - 0.6 - width) / 2
    z0, z1 = zc - width / 2, zc + width / 2
    x_wall, x_out = end * L / 2, end * (L / 2 + depth)
    planes = np.array([(-end * t, 0, top + t * L / 2)])
    box = np.array([min(x_wall, x_out), z0, max(x_wall, x_out), z1])
    wing = Wing(box, planes, (end > 0, end < 0, True, True))
    segments = [((x_wall, top, z0), (x_wall, top, z1), "flashing"), ((x_out, low, z0), (x_out, low, z1), "eave"),
                ((x_wall, top, z0), (x_out, low, z0), "rake"), ((x_wall, top, z1), (x_out, low, z1), "rake")]
    return [wing], segments


def _garage(rng, L, W, end):
    """A small detached building beyond the main wing's end x = end * L/2."""
    width = rng.uniform(3.0, 6.0)
    length = max(rng.uniform(4.0, 8.0), width + 0.5)
    roof = str(rng.choice(("gable", "hip", "flat", "shed")))
    t = np.tan(np.radians(rng.uniform(8, 20) if roof == "shed" else rng.uniform(15, 40)))
    wings, segments = _rect_roof(roof, length, width, rng.uniform(2.4, 3.0), t)
    swap = bool(rng.random() < 0.5)
    half = (width if swap else length) / 2
    return _placed(wings, segments, end * (L / 2 + rng.uniform(2.0, 5.0) + half), rng.uniform(-0.5, 0.5) * W, swap)


def _placed(wings, segments, dx, dz, swap):
    """Move a roof built along x by (dx, dz) in plan; swap = turn it to run along z."""
    def move(p):
        x, y, z = (p[2], p[1], p[0]) if swap else p
        return (x + dx, y, z + dz)

    moved = []
    for wing in wings:
        x0, z0, x1, z1 = wing.box
        a, b, c = wing.planes.T
        if swap:
            x0, z0, x1, z1, a, b = z0, x0, z1, x1, b, a
            walls = (wing.walls[2], wing.walls[3], wing.walls[0], wing.walls[1])
        else:
            walls = wing.walls
        planes = np.stack([a, b, c - a * dx - b * dz], axis=1)
        moved.append(Wing(np.array([x0 + dx, z0 + dz, x1 + dx, z1 + dz]), planes, walls))
    return moved, [(move(p), move(q), cls) for p, q, cls in segments]


def suitable_roofs(footprint):
    """The roof kinds a footprint can carry."""
    return RECT_ROOFS if footprint == "rect" else WING_ROOFS


def _draw(rng, weights, allowed):
    """A name drawn from {name: weight}, among the allowed names (weights renormalised)."""
    names = [name for name in weights if name in allowed]
    p = np.array([weights[name] for name in names])
    # every name allowed: the weights as they are, so that the draw is exactly the one of an
    # unrestricted generator (normalising changes the last bits of numpy's cumulative sums)
    return str(rng.choice(names, p=p if len(names) == len(weights) else p / p.sum()))


def random_house(rng, footprint=None, roof=None, footprints=FOOTPRINTS, roofs=ROOFS, extras=True):
    """A random house; footprint and roof are drawn unless given (roof must suit the footprint).

    Drawn footprints and roofs come from `footprints` and `roofs` only (every footprint
    there needs a suitable roof there); extras=False leaves out chimneys, lean-tos and garages.
    Sizes in metres: main wing 5.5-11 wide and up to 25 long, 1-2 storeys (flat: 1-3),
    pitch 18-45 degrees (shed 6-20, pyramid 20-40). Extras: a chimney (35%), a lean-to on a
    gable or flat roof (20%), a detached garage (15%).
    """
    footprint = footprint or _draw(rng, FOOTPRINT_WEIGHTS, footprints)
    if footprint not in FOOTPRINTS:
        raise ValueError(f"unknown footprint {footprint!r}; expected one of {FOOTPRINTS}")
    allowed = suitable_roofs(footprint)
    if roof is None:
        if not set(allowed) & set(roofs):
            raise ValueError(f"no roof in {tuple(roofs)} suits footprint {footprint!r}; expected one of {allowed}")
        roof = _draw(rng, RECT_ROOF_WEIGHTS if footprint == "rect" else WING_ROOF_WEIGHTS, roofs)
    if roof not in allowed:
        raise ValueError(f"roof {roof!r} does not suit footprint {footprint!r}; expected one of {allowed}")

    W = rng.uniform(5.5, 11.0)
    L = min(W * rng.uniform(1.0, 1.35), 25.0) if roof == "pyramid" else min(W + rng.uniform(1.0, 14.0), 25.0)
    if footprint == "U":
        L = max(L, min(25.0, 2.0 * W + 1.0))
    storeys = rng.integers(1, 4 if roof == "flat" else 3)
    H = storeys * rng.uniform(2.6, 3.2)  # eave height
    pitch = {"shed": (6, 20), "flat": (0, 0), "pyramid": (20, 40)}.get(roof, (18, 45))
    t = np.tan(np.radians(rng.uniform(*pitch)))
    if footprint == "rect":
        wings, segments = _rect_roof(roof, L, W, H, t)
    else:
        wings, segments = _winged_roof(rng, footprint, roof, L, W, H, t)

    chimney = None
    if extras:
        if rng.random() < 0.35:
            chimney, chimney_segments = _chimney(rng, wings, W, L)
            segments += chimney_segments
        end = rng.choice((-1, 1))
        if roof in ("gable", "cross_gable", "flat") and rng.random() < 0.2:
            lean_wings, lean_segments = _lean_to(rng, L, W, H, end)
            wings, segments = wings + lean_wings, segments + lean_segments
        if rng.random() < 0.15:
            garage_wings, garage_segments = _garage(rng, L, W, -end)
            wings, segments = wings + garage_wings, segments + garage_segments

    vertices, edges, classes, kinds = wireframe(segments)
    if not 1 <= len(edges) <= MAX_GT_EDGES:
        raise RuntimeError(f"generated {len(edges)} GT edges; the generator must stay within 1..{MAX_GT_EDGES}")
    return House(footprint, roof, wings, vertices, edges, classes, kinds, chimney, rng.uniform(0.0, 0.5))
