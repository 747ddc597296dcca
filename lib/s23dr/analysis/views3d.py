"""The notebooks' 3D views (plotly): scenes' points by class, their GT wireframe and a
predicted one. Scenes are in the schema of `schema.py`, wireframes `(vertices [N,3] in
metres, edges [E,2])`.

The book is read from disk with no network: `offline(fig)` shows a plotly figure as
HTML that expects plotly.js on the page (the book loads `book/_static/plotly.min.js`,
which `pipeline.build_book` copies there from the plotly package), and as plotly's own
mime type for JupyterLab.
"""

import json

import matplotlib.pyplot as plt
from matplotlib.colors import to_hex
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..schema import POINT_CLASSES

#: Point colours: the 10 vertex and edge classes in strong colours, surfaces in greys and green.
CLASS_COLORS = [to_hex(plt.get_cmap("tab10")(i)) for i in range(10)] + ["#9aa5b1", "#cfcfcf", "#a9d18e"]
GT_COLOR, PRED_COLOR = "black", "#e6007e"


def _lines(vertices, edges, name, color, legend, rank):
    """One Scatter3d of a wireframe: each edge a segment, None between segments."""
    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    xyz = [[c for i, j in edges for c in (vertices[i][axis], vertices[j][axis], None)] for axis in range(3)]
    return go.Scatter3d(x=xyz[0], y=xyz[1], z=xyz[2], mode="lines+markers", name=name, legendrank=rank,
                        legendgroup=name, showlegend=legend, line=dict(color=color, width=5),
                        marker=dict(color=color, size=2.5))


def scene_traces(scene, frame=None, legend=True):
    """The traces of one scene: its valid points (metres) by class, the GT and the predicted wireframe."""
    mask = scene["mask"]
    xyz = scene["xyz_norm"][mask].astype(np.float64) * float(scene["scale"]) + scene["center"]
    classes = scene["class_id"][mask]
    traces = []
    for c in np.unique(classes):
        p = xyz[classes == c]
        traces.append(go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=POINT_CLASSES[c],
                                   legendgroup=POINT_CLASSES[c], showlegend=legend, legendrank=10 + int(c),
                                   marker=dict(size=2.5, color=CLASS_COLORS[c], opacity=0.7)))
    traces.append(_lines(scene["gt_vertices"], scene["gt_edges"], "GT wireframe", GT_COLOR, legend, 1))
    if frame is not None:
        traces.append(_lines(*frame, "predicted wireframe", PRED_COLOR, legend, 2))
    return traces


#: The book's text column at a 1400-px window (sphinx-book-theme's article, 784 px inside its
#: padding, measured in Chromium) less a little: the width the 3D views are drawn at.
CONTENT_WIDTH = 760
#: The direction the 3D views look from (Y up). Only the direction counts: the projection is
#: orthographic, so `framed_scene` sizes the house exactly, whatever the distance.
VIEW_DIRECTION = dict(x=1.35, y=1.0, z=1.35)
#: Share of a view's half-width and half-height left empty around the scene's box, for the
#: axes' tick labels and titles drawn outside it.
VIEW_MARGIN = 0.2
#: Pixels above each row of views (its titles) and below the last (the legend).
TITLE_PX, LEGEND_PX = 44, 72


def framed_scene(xyz, aspect):
    """A 3D scene's layout that frames the bounding box of the points `xyz` [N,3] whole, with
    VIEW_MARGIN to spare, in a view `aspect` (width / height) times as wide as it is high.

    Plotly draws a scene's box (its axis ranges) scaled to `aspectratio` about the origin and
    looks at it from `camera.eye` towards `camera.center`; an orthographic projection shows
    view coordinates [-aspect, aspect] x [-1, 1]. So the box's corners, seen along
    VIEW_DIRECTION, are scaled until the farthest one lies at 1 - VIEW_MARGIN of the frame.
    The eye sits just outside the box (in front of the near plane)."""
    lo, hi = np.nanmin(xyz, axis=0), np.nanmax(xyz, axis=0)
    pad = 0.02 * max(float((hi - lo).max()), 1.0)  # markers on the box's faces are not clipped
    lo, hi = lo - pad, hi + pad
    ratio = (hi - lo) / (hi - lo).max()
    back = np.array([VIEW_DIRECTION[k] for k in "xyz"], np.float64)
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * ratio / 2
    scale = (1 - VIEW_MARGIN) / max(np.abs(corners @ right).max() / aspect, np.abs(corners @ up).max())
    eye = back * (1 + scale * np.linalg.norm(ratio) / 2)
    return {**{f"{axis}axis_range": [float(lo[i]), float(hi[i])] for i, axis in enumerate("xyz")},
            "aspectmode": "manual", "aspectratio": dict(zip("xyz", map(float, scale * ratio))),
            "camera": dict(projection_type="orthographic", eye=dict(zip("xyz", map(float, eye))),
                           center=dict(x=0, y=0, z=0), up=dict(x=0, y=1, z=0))}


def trace_points(traces):
    """The [N,3] points of Scatter3d traces (the None gaps between segments left out)."""
    xyz = [np.array([t.x, t.y, t.z], dtype=np.float64).T for t in traces if t.x is not None and len(t.x)]
    return np.concatenate(xyz)


def wireframes(scenes, frames=None, titles=None, cols=3, width=CONTENT_WIDTH):
    """3D views of scenes side by side (Y up): points by class, GT in black, predictions in magenta.
    Each view is square, `width / cols` pixels, and frames its whole scene (`framed_scene`).

    frames: one (vertices, edges) per scene, or None for the GT alone.
    """
    if not scenes:
        raise ValueError("wireframes: no scenes to draw")
    cols = min(cols, len(scenes))
    rows = -(-len(scenes) // cols)
    view = width / cols
    plot_height = rows * view + (rows - 1) * TITLE_PX
    fig = make_subplots(rows=rows, cols=cols, specs=[[{"type": "scene"}] * cols] * rows, subplot_titles=titles,
                        horizontal_spacing=0, vertical_spacing=TITLE_PX / plot_height)
    shown = set()
    for i, scene in enumerate(scenes):
        traces = scene_traces(scene, None if frames is None else frames[i])
        for trace in traces:
            trace.showlegend = trace.name not in shown
            shown.add(trace.name)
            fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
        layout = fig.layout["scene" + (str(i + 1) if i else "")]
        aspect = (np.ptp(layout.domain.x) * width) / (np.ptp(layout.domain.y) * plot_height)
        layout.update(framed_scene(trace_points(traces), aspect))
    fig.update_scenes(xaxis_title="x (m)", yaxis_title="y (m, up)", zaxis_title="z (m)")
    fig.update_annotations(font_size=12)  # the subplot titles
    # The margins hold the titles and the legend and never grow (autoexpand), so each view
    # is the size its framing was computed for.
    fig.update_layout(width=width, height=plot_height + TITLE_PX + LEGEND_PX,
                      margin=dict(l=0, r=0, t=TITLE_PX, b=LEGEND_PX, autoexpand=False),
                      legend=dict(orientation="h", x=0, xanchor="left", y=0, yanchor="top", itemsizing="constant",
                                  font=dict(size=10)))
    return fig


class offline:
    """A plotly figure for display and `myst_nb.glue`: HTML that draws with the page's plotly.js
    (the book's `_static/plotly.min.js`; no network) and plotly's mime type for JupyterLab."""

    def __init__(self, figure):
        self.figure = figure

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.figure.to_html(include_plotlyjs=False, full_html=False),
                "application/vnd.plotly.v1+json": json.loads(self.figure.to_json()),
                "text/plain": f"<3D figure: {len(self.figure.data)} traces>"}
