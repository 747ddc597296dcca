"""The notebooks' figures: curves and histograms (matplotlib), 3D wireframes (plotly).

Curves take runs as `{label: rows}`, the rows of a run's `metrics.jsonl`
(`rundir.MetricsLog.read`), so a stage can be drawn on the global-step axis next to
the stages it started from. 3D views take scenes in the schema of `schema.py` and
wireframes as `(vertices [N,3] in metres, edges [E,2])`.

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

#: Panel titles of the metrics-log keys.
TITLES = {
    "total": "training loss", "transport": "transport loss (the plan's cost)", "conf": "confidence loss",
    "endpoint": "endpoint loss", "aux": "earlier decoder layers' loss", "lr": "learning rate", "samples_per_s": "samples / s",
    "val_loss": "val loss", "train_loss": "train loss (eval mode)", "ratio": "val / train loss",
    "hss": "val HSS", "f1": "val corner F1", "iou": "val edge IoU",
}

#: Point colours: the 10 vertex and edge classes in strong colours, surfaces in greys and green.
CLASS_COLORS = [to_hex(plt.get_cmap("tab10")(i)) for i in range(10)] + ["#9aa5b1", "#cfcfcf", "#a9d18e"]
GT_COLOR, PRED_COLOR = "black", "#e6007e"
REFERENCE_STYLES = (":", "--", "-.")


def curves(runs, keys, kind="eval", references=None):
    """One panel per metrics-log key against the global step, one line per run, one legend.

    runs: {label: rows}; kind: which rows to draw, "train" or "eval". The seeds of one arm
    (labels "<arm> seed=<N>") share a colour and one legend entry.
    references: {key: {label: value}}, drawn as grey horizontal lines (the seed's figures),
    one line style per label; a None value is left out.
    """
    references = {key: {name: v for name, v in refs.items() if v is not None}
                  for key, refs in (references or {}).items()}
    names = dict.fromkeys(name for refs in references.values() for name in refs)
    styles = {name: REFERENCE_STYLES[i % len(REFERENCE_STYLES)] for i, name in enumerate(names)}
    fig, axes = plt.subplots(1, len(keys), figsize=(min(10.5, 1 + 3.6 * len(keys)), 3.3), squeeze=False)
    arms = list(dict.fromkeys(label.split(" seed=")[0] for label in runs))
    seeds = {arm: sum(label.split(" seed=")[0] == arm for label in runs) for arm in arms}
    for ax, key in zip(axes[0], keys):
        labelled = set()
        for label, rows in runs.items():
            arm = label.split(" seed=")[0]
            points = [(r["step"], r[key]) for r in rows if r["kind"] == kind and r.get(key) is not None]
            if points:
                steps, values = zip(*points)
                legend = "_nolegend_" if arm in labelled else arm + (f" ({seeds[arm]} seeds)" if seeds[arm] > 1 else "")
                labelled.add(arm)
                ax.plot(steps, values, color=f"C{arms.index(arm) % 10}", label=legend, lw=1.0,
                        marker="o" if kind == "eval" else None, markersize=2.5, alpha=0.85)
        for name, value in references.get(key, {}).items():
            ax.axhline(value, color="0.45", ls=styles[name], lw=1, label=name)
        ax.set_title(TITLES.get(key, key))
        ax.set_xlabel("global step")
        ax.grid(alpha=0.3)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    legend = {}  # one legend beside the panels: each run and reference once
    for ax in axes[0]:
        legend.update({label: handle for handle, label in zip(*ax.get_legend_handles_labels())})
    fig.tight_layout()
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return fig


def claim_differences(parts):
    """Each claim part's per-seed values (dots: the difference A - B, or a share part's contrast
    part - share × whole), the 95% interval over the seeds (bar through the mean), zero (line) and
    a decisive part's bounds ±Δ (dashes): one panel per metric, each on its own axis. Decisive
    parts dark, those shown beside them grey. parts: {row label: `claims.rule_part` figures}."""
    by_metric = {}
    for label, part in parts.items():
        by_metric.setdefault(part["metric"].split()[-1], {})[label] = part
    heights = [len(rows) + 1.2 for rows in by_metric.values()]
    fig, axes = plt.subplots(len(by_metric), 1, figsize=(10, 0.42 * sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (metric, rows) in zip(axes[:, 0], by_metric.items()):
        for y, (label, part) in enumerate(reversed(list(rows.items()))):
            color = "C0" if part["decides"] else "0.55"
            if np.isfinite([part["low"], part["high"]]).all():
                ax.plot([part["low"], part["high"]], [y, y], color=color, lw=3, alpha=0.6, solid_capstyle="butt")
            ax.plot(part["differences"], [y] * len(part["differences"]), "o", color=color, markersize=4)
            ax.plot([part["mean"]], [y], "|", color="black", markersize=12)
            if part["decides"] and part["smallest"] and part["test"] != "share":
                bounds = [part["smallest"]] if part["test"] in ("beyond", "within") else [-part["smallest"], part["smallest"]]
                for bound in bounds:
                    ax.plot([bound, bound], [y - 0.35, y + 0.35], color="C3", lw=1.2, ls="--")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(rows)), list(reversed(rows)), fontsize=9)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel(f"{metric}: A − B per seed, its 95% interval and ±Δ")
    fig.tight_layout()
    return fig


def gain_split(splits):
    """Each stage's gain split by cause, one panel per stage, one stacked bar per training seed
    (a negative cause stacks below zero), the attributed share with its interval in the title.
    splits: {title: ({cause: {seed: value}}, (share, low, high) or None)} (`claims.gain_split`)."""
    fig, axes = plt.subplots(1, len(splits), figsize=(10, 3.6), squeeze=False)
    for ax, (title, (causes, share)) in zip(axes[0], splits.items()):
        seeds = sorted({s for by_seed in causes.values() for s in by_seed})
        up, down = np.zeros(len(seeds)), np.zeros(len(seeds))
        for i, (cause, by_seed) in enumerate(causes.items()):
            values = np.array([by_seed.get(s, 0.0) for s in seeds])
            bottom = np.where(values >= 0, up, down)
            ax.bar([str(s) for s in seeds], values, bottom=bottom, color=f"C{i}", label=cause, width=0.6)
            up, down = up + np.clip(values, 0, None), down + np.clip(values, None, 0)
        ax.axhline(0, color="black", lw=0.8)
        if share is not None:
            title += f"\nshare of the first cause {share[0]:.2f} [{share[1]:.2f}, {share[2]:.2f}]"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training seed")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def finetune_band(runs, start, key="hss"):
    """A finetune's evaluations zoomed on its own steps: one panel, per arm every seed's curve
    (thin) and the mean over seeds ± one sd (line and band) at the steps all seeds share.
    runs: {arm: {seed: metrics rows}}; start: the finetune's first step."""
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, (arm, by_seed) in enumerate(runs.items()):
        curves_ = {s: {r["step"]: r[key] for r in rows if r["kind"] == "eval" and r["step"] >= start}
                   for s, rows in by_seed.items()}
        for steps in curves_.values():
            ax.plot(list(steps), list(steps.values()), color=f"C{i}", lw=0.7, alpha=0.4)
        shared = sorted(set.intersection(*(set(c) for c in curves_.values()))) if curves_ else []
        if shared:
            values = np.array([[c[t] for t in shared] for c in curves_.values()])
            mean, sd = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(shared))
            ax.plot(shared, mean, color=f"C{i}", lw=2, label=f"{arm} (mean of {len(values)} ± sd)")
            ax.fill_between(shared, mean - sd, mean + sd, color=f"C{i}", alpha=0.15)
    ax.set_xlabel("global step")
    ax.set_ylabel(TITLES.get(key, key))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def threshold_sweep(sweeps, confidences, threshold):
    """Left: mean HSS against the confidence threshold, one line per run (sweeps: {label: table
    from report.scores_by_threshold}). Right: histogram of every query's confidence per run
    (confidences: {label: array}). The grey line is the threshold the params evaluate at."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.3))
    bins = np.linspace(0, 1, 41)
    for i, (label, table) in enumerate(sweeps.items()):
        left.plot(table.index, table["hss"], color=f"C{i}", marker="o", markersize=3, lw=1.2, label=label)
        right.hist(np.ravel(confidences[label]), bins=bins, color=f"C{i}", histtype="step", lw=1.2)
    for ax in (left, right):
        ax.axvline(threshold, color="0.45", ls="--", lw=1)
        ax.grid(alpha=0.3)
    left.set(title="val HSS against the confidence threshold", xlabel="confidence threshold")
    right.set(title="confidence of every query", xlabel="confidence", ylabel="queries", yscale="log")
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def nearest_errors(errors, threshold):
    """Share of validation GT segments whose nearest query lies within d metres at both ends,
    against d, one line per run (errors: {label: array of metres, from report.nearest_errors}).
    The grey line is the metric's vertex threshold: a segment is scored only left of it."""
    fig, ax = plt.subplots(figsize=(6.5, 3.3))
    for i, (label, metres) in enumerate(errors.items()):
        d = np.sort(np.asarray(metres))
        ax.step(d, np.arange(1, len(d) + 1) / len(d), where="post", color=f"C{i}", lw=1.2, label=label)
    ax.axvline(threshold, color="0.45", ls="--", lw=1)
    ticks = [0.125, 0.25, 0.5, 1, 2, 4, 8, 16]
    ax.set(xscale="log", xticks=ticks, xticklabels=[f"{t:g}" for t in ticks],
           xlabel="distance of the nearest query at its farther end (m)",
           ylabel="share of GT segments", title="how close the nearest query comes to each GT segment", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def data_overview(samples):
    """Class and source shares of the valid points at each sampling; GT vertices and edges
    per scene (the GT does not depend on the sampling: each scene counts once).

    samples: {label: scenes}, e.g. the validation scenes at each point count.
    """
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 6.5))
    width = 0.8 / len(samples)
    for i, (label, scenes) in enumerate(samples.items()):
        classes = np.concatenate([s["class_id"][s["mask"]] for s in scenes])
        sources = np.concatenate([s["source"][s["mask"]] for s in scenes])
        offset = (i - (len(samples) - 1) / 2) * width
        for ax, values, n in ((axes[0, 0], classes, len(POINT_CLASSES)), (axes[0, 1], sources, 2)):
            ax.bar(np.arange(n) + offset, np.bincount(values, minlength=n) / len(values),
                   width, color=f"C{i}", label=label)
        axes[0, 0].legend(fontsize=8)
        axes[0, 1].legend(fontsize=8)
    unique = {s["order_id"]: s for scenes in samples.values() for s in scenes}.values()
    for ax, field in ((axes[1, 0], "gt_vertices"), (axes[1, 1], "gt_edges")):
        counts = [len(s[field]) for s in unique]
        ax.hist(counts, bins=np.arange(max(counts) + 2) - 0.5, color="0.45")
        ax.set_xlabel(f"count ({len(counts)} scenes)")
    axes[0, 0].set_xticks(range(len(POINT_CLASSES)), POINT_CLASSES, rotation=45, ha="right", fontsize=8)
    axes[0, 1].set_xticks([0, 1], ["sparse (COLMAP)", "depth"])
    for ax, title in zip(axes.flat, ("point class (share of valid points)", "point source (share)",
                                     "GT vertices per scene", "GT edges per scene")):
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


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
