"""The figures the notebooks and the book rely on: curves with one line per run, 3D views
with the points, the GT and the predicted wireframe of every scene, HTML that works offline."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from s23dr.analysis import figures, views3d
from s23dr.experiments import stage_params, stage_runs
from s23dr.schema import POINT_CLASSES

PARAMS = Path(__file__).resolve().parents[1] / "params"
ROWS = [
    {"step": 1, "kind": "train", "lr": 1e-4, "total": 0.5},
    {"step": 2, "kind": "train", "lr": 2e-4, "total": 0.4},
    {"step": 2, "kind": "eval", "hss": 0.1, "f1": 0.2, "iou": 0.05, "ratio": 1.1},
    {"step": 4, "kind": "eval", "hss": 0.2, "f1": 0.3, "iou": 0.15, "ratio": 1.2},
]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def legend_labels(fig):
    return [text.get_text() for text in fig.legends[0].get_texts()]


def test_curves_draw_a_line_per_run_on_the_global_step_axis_and_the_references():
    later = [dict(r, step=r["step"] + 10) for r in ROWS]
    fig = figures.curves({"stage1": ROWS, "stage2": later}, ("hss", "ratio"),
                         references={"hss": {"seed": 0.38, "missing": None}})
    hss, ratio = fig.axes
    assert list(lines(hss)) == ["stage1", "stage2", "seed"]
    assert list(lines(ratio)) == ["stage1", "stage2"]
    assert list(lines(hss)["stage2"].get_xdata()) == [12, 14]
    assert list(lines(ratio)["stage1"].get_ydata()) == [1.1, 1.2]
    assert list(lines(hss)["seed"].get_ydata()) == [0.38, 0.38]
    assert legend_labels(fig) == ["stage1", "stage2", "seed"]


def test_curves_give_a_reference_the_same_style_in_every_panel():
    fig = figures.curves({"stage1": ROWS}, ("hss", "f1", "iou"),
                         references={"hss": {"seed: stage 2": 0.35, "seed: stage 3": 0.38},
                                     "iou": {"seed: stage 3": 0.37}})
    hss, _, iou = fig.axes
    assert lines(hss)["seed: stage 3"].get_linestyle() == lines(iou)["seed: stage 3"].get_linestyle()
    assert lines(hss)["seed: stage 2"].get_linestyle() != lines(hss)["seed: stage 3"].get_linestyle()


def test_curves_keep_a_runs_colour_when_another_run_has_no_rows():
    fig = figures.curves({"empty": [], "stage2": ROWS}, ("total", "lr"), kind="train")
    loss, lr = fig.axes
    assert list(lines(loss)) == ["stage2"]
    assert lines(loss)["stage2"].get_color() == lines(lr)["stage2"].get_color() == "C1"
    assert list(lines(lr)["stage2"].get_ydata()) == [1e-4, 2e-4]


def test_data_overview_has_class_and_source_bars_per_sampling(make_scene):
    scenes = [make_scene("a", seed=0), make_scene("b", seed=1, n_edges=3)]
    fig = figures.data_overview({"128 points": scenes, "256 points": scenes})
    classes, sources, vertices, edges = fig.axes
    assert len(classes.patches) == 2 * len(POINT_CLASSES)
    assert len(sources.patches) == 2 * 2
    counts = classes.patches[:len(POINT_CLASSES)]
    assert sum(p.get_height() for p in counts) == pytest.approx(1.0)
    assert sum(p.get_height() for p in edges.patches) == 2  # each scene counted once


def test_wireframes_show_points_gt_and_prediction_of_every_scene(make_scene):
    scenes = [make_scene("a", seed=0), make_scene("b", seed=1, n_edges=3)]
    frames = [(np.array([[0.0, 0, 0], [1, 1, 1], [2, 0, 2]]), np.array([[0, 1], [1, 2]])),
              (np.zeros((0, 3)), np.zeros((0, 2), np.int64))]
    fig = views3d.wireframes(scenes, frames, titles=["a", "b"], cols=2)
    for scene, frame, subplot in zip(scenes, frames, ("scene", "scene2")):
        traces = {t.name: t for t in fig.data if t.scene == subplot}
        mask = scene["mask"]
        present = [POINT_CLASSES[c] for c in np.unique(scene["class_id"][mask])]
        assert set(traces) == set(present) | {"GT wireframe", "predicted wireframe"}
        assert sum(len(traces[name].x) for name in present) == mask.sum()
        gt = traces["GT wireframe"]
        assert len(gt.x) == 3 * len(scene["gt_edges"])  # two endpoints and a gap per edge
        first = scene["gt_vertices"][scene["gt_edges"][0, 0]]
        assert (gt.x[0], gt.y[0], gt.z[0]) == pytest.approx(tuple(first))
        assert len(traces["predicted wireframe"].x) == 3 * len(frame[1])
    gt_traces = [t for t in fig.data if t.name == "GT wireframe"]
    assert [t.showlegend for t in gt_traces] == [True, False]  # one legend entry per name
    assert fig.layout.scene.camera.up.y == 1  # Y is up


def test_wireframes_points_are_in_metres(make_scene):
    scene = make_scene("a", seed=2)
    fig = views3d.wireframes([scene])
    xyz = np.concatenate([np.stack([t.x, t.y, t.z], 1) for t in fig.data if t.name in POINT_CLASSES])
    metres = scene["xyz_norm"][scene["mask"]] * scene["scale"] + scene["center"]
    assert np.sort(xyz[:, 0]) == pytest.approx(np.sort(metres[:, 0]), abs=1e-4)


def frame_positions(fig, subplot):
    """Where the 8 corners of the bounding box of a view's traces land in its frame, as plotly.js
    draws an orthographic scene: the axis ranges scaled to `aspectratio` about the origin, the
    camera's look-at (eye, center, up), and the projection onto [-w/h, w/h] x [-1, 1], w x h the
    view's pixels (its domain of the plot area). Returns [8, 2] in the frame's units: inside is
    within [-1, 1]."""
    layout = fig.layout[subplot]
    xyz = np.concatenate([np.array([t.x, t.y, t.z], np.float64).T for t in fig.data if t.scene == subplot])
    lo, hi = np.nanmin(xyz, 0), np.nanmax(xyz, 0)
    corners = np.array([[(lo, hi)[a][0], (lo, hi)[b][1], (lo, hi)[c][2]] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    ranges = np.array([layout[f"{axis}axis"].range for axis in "xyz"])
    aspect = np.array([layout.aspectratio[axis] for axis in "xyz"])
    model = (corners - ranges.mean(1)) / np.ptp(ranges, 1) * aspect
    camera = layout.camera
    eye, center, up = (np.array([getattr(camera, part)[axis] for axis in "xyz"], np.float64) for part in ("eye", "center", "up"))
    back = (eye - center) / np.linalg.norm(eye - center)
    right = np.cross(up, back) / np.linalg.norm(np.cross(up, back))
    view_up = np.cross(back, right)
    assert camera.projection.type == "orthographic"
    assert np.all((model - eye) @ back < -0.01)  # every corner in front of the near plane
    margin = fig.layout.margin
    width = np.ptp(layout.domain.x) * (fig.layout.width - margin.l - margin.r)
    height = np.ptp(layout.domain.y) * (fig.layout.height - margin.t - margin.b)
    return np.stack([(model - eye) @ right / (width / height), (model - eye) @ view_up], 1)


@pytest.mark.parametrize("cols", [1, 2, 3])
def test_every_3d_view_frames_its_whole_scene(make_scene, cols):
    """A house cut at the frame's edge (as in the book at a 1400-px window before) fails here."""
    house = make_scene("house", seed=3)
    house["gt_vertices"] = house["gt_vertices"] * np.array([3.0, 0.5, 1.0], np.float32)  # wide and flat
    scenes = [house, make_scene("b", seed=4), make_scene("c", seed=5, n_edges=2), make_scene("d", seed=6)]
    fig = views3d.wireframes(scenes, titles=list("abcd"), cols=cols)
    assert fig.layout.width == views3d.CONTENT_WIDTH and fig.layout.margin.autoexpand is False
    for i in range(len(scenes)):
        frame = frame_positions(fig, "scene" + (str(i + 1) if i else ""))
        assert np.abs(frame).max() <= 1 - views3d.VIEW_MARGIN + 1e-6
        assert np.abs(frame).max() >= 0.9 * (1 - views3d.VIEW_MARGIN)  # and fills it (less the ranges' padding), not a speck


def test_wireframes_without_scenes_is_an_error():
    with pytest.raises(ValueError, match="no scenes"):
        views3d.wireframes([])


def test_offline_html_leaves_plotly_js_to_the_page(make_scene):
    bundle = views3d.offline(views3d.wireframes([make_scene("a")]))._repr_mimebundle_()
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html
    assert "<script src=" not in html and len(html) < 200_000  # neither a CDN link nor the 4.8 MB library
    assert len(bundle["application/vnd.plotly.v1+json"]["data"]) > 0


def test_seeds_of_one_arm_share_a_colour_and_a_legend_entry():
    two = stage_runs(stage_params("cpu", PARAMS)["stage1"], "r", PARAMS)[:2]
    fig = figures.curves({two[0]: ROWS, two[1]: ROWS, "stage2": ROWS}, ("hss",))
    drawn = fig.axes[0].get_lines()
    assert drawn[0].get_color() == drawn[1].get_color() != drawn[2].get_color()
    assert [line.get_label() for line in drawn] == ["stage1 (2 seeds)", "_nolegend_", "stage2"]


def test_claim_differences_draw_every_seed_and_the_interval():
    parts = {"2a: denser points (hss)": {"differences": [0.1, 0.2, 0.15], "mean": 0.15, "low": 0.03, "high": 0.27,
                                         "decides": True, "metric": "hss", "test": "exists", "smallest": 0.015},
             "2: the whole jump (hss)": {"differences": [0.3], "mean": 0.3, "low": -np.inf, "high": np.inf,
                                         "decides": False, "metric": "hss", "test": "exists", "smallest": 0.015},
             "4a: the endpoint term (f1)": {"differences": [0.02, 0.03], "mean": 0.025, "low": 0.0, "high": 0.05,
                                            "decides": True, "metric": "f1", "test": "exists", "smallest": 0.015}}
    fig = figures.claim_differences(parts)
    assert [ax.get_xlabel().split(":")[0] for ax in fig.axes] == ["hss", "f1"]  # each metric on its own axis
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(reversed(list(parts)[:2]))
    assert any(list(line.get_xdata()) == [0.015, 0.015] for line in ax.get_lines())  # the +Δ bound
    points = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sorted(len(line.get_xdata()) for line in points) == [1, 3]
    assert any(list(line.get_xdata()) == [0.03, 0.27] for line in ax.get_lines())  # the interval's bar


def test_a_3d_view_frames_a_house_in_a_real_browser(tmp_path):
    """What the projection test assumes of plotly.js, checked where Chromium is installed:
    the black GT lines of a 10 x 5 x 8 m box stay clear of the view's edges."""
    import shutil
    import sys
    from pathlib import Path

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import framing
    finally:
        sys.path.pop(0)
    fig = views3d.wireframes([framing.box_scene()], cols=1)
    left, top, right, bottom = framing.dark_extent(framing.screenshot(fig, tmp_path / "box.png", chromium))
    width, height = fig.layout.width, fig.layout.height - views3d.LEGEND_PX
    assert framing.MARGIN <= left and right < width - framing.MARGIN
    assert framing.MARGIN <= top and bottom < height - framing.MARGIN
    assert right - left > width / 3  # the house fills the view, not a speck


def test_gain_split_stacks_every_cause_per_seed():
    causes = {"denser points": {1: 0.05, 2: 0.03}, "the rest": {1: 0.2, 2: -0.01}}
    ax = figures.gain_split({"claim 2: hss gain": (causes, (0.2, 0.1, 0.3))}).axes[0]
    bars = [p for p in ax.patches]
    assert len(bars) == 4 and "0.20 [0.10, 0.30]" in ax.get_title()
    # seed 2's negative rest stacks below zero, its positive points above
    assert sorted((round(b.get_y(), 3), round(b.get_height(), 3)) for b in bars if b.get_x() > 0.5) == [(0.0, -0.01), (0.0, 0.03)]


def test_finetune_band_draws_the_mean_over_seeds_from_the_start():
    rows = lambda s: [{"kind": "eval", "step": t, "hss": 0.1 * s + t / 100} for t in (0, 110, 120)]
    ax = figures.finetune_band({"stage2": {1: rows(1), 2: rows(2)}}, start=100).axes[0]
    mean = [line for line in ax.get_lines() if line.get_label().startswith("stage2")][0]
    assert list(mean.get_xdata()) == [110, 120] and list(mean.get_ydata()) == pytest.approx([1.25, 1.35])
