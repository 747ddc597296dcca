"""The notebooks' figures (matplotlib): training curves, the verdicts' evidence, the
checkpoint probes and the data's histograms; the 3D views are `views3d`'s.

Curves take runs as `{label: rows}`, the rows of a run's metrics log
(`rundir.MetricsLog.read`), so a stage can be drawn on the global-step axis next to
the stages it started from.
"""

import matplotlib.pyplot as plt
import numpy as np

from ..rundir import MetricsLog
from ..schema import POINT_CLASSES

#: Panel titles of the metrics-log keys.
TITLES = {
    "total": "training loss", "transport": "transport loss (the plan's cost)", "conf": "confidence loss",
    "endpoint": "endpoint loss", "aux": "earlier decoder layers' loss", "lr": "learning rate", "samples_per_s": "samples / s",
    "val_loss": "val loss", "train_loss": "train loss (eval mode)", "ratio": "val / train loss",
    "hss": "val HSS", "f1": "val corner F1", "iou": "val edge IoU",
}

REFERENCE_STYLES = (":", "--", "-.")


def curves(runs, keys, kind="eval", references=None):
    """One panel per metrics-log key against the global step, one line per run, one legend.

    runs: {Run: rows} (`experiments.Run`), or {name: rows} of single runs; kind: which rows to
    draw, "train" or "eval". The seeds of one arm (`Run.arm`) share a colour and one legend entry.
    references: {key: {label: value}}, drawn as grey horizontal lines (the baseline's figures),
    one line style per label; a None value is left out.
    """
    references = {key: {name: v for name, v in refs.items() if v is not None}
                  for key, refs in (references or {}).items()}
    names = dict.fromkeys(name for refs in references.values() for name in refs)
    styles = {name: REFERENCE_STYLES[i % len(REFERENCE_STYLES)] for i, name in enumerate(names)}
    fig, axes = plt.subplots(1, len(keys), figsize=(min(10.5, 1 + 3.6 * len(keys)), 3.3), squeeze=False)
    pick = {"eval": MetricsLog.evals, "train": MetricsLog.trains}[kind]
    arm_of = {run: getattr(run, "arm", run) for run in runs}
    arms = list(dict.fromkeys(arm_of.values()))
    seeds = {arm: list(arm_of.values()).count(arm) for arm in arms}
    for ax, key in zip(axes[0], keys):
        labelled = set()
        for run, rows in runs.items():
            arm = arm_of[run]
            points = [(r["step"], r[key]) for r in pick(rows) if r.get(key) is not None]
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
    parts dark, those shown beside them grey. parts: {row label: `ruling.rule_part` figures}."""
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
    splits: {title: ({cause: {seed: value}}, (share, low, high) or None)} (`ruling.gain_split`)."""
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
        curves_ = {s: {r["step"]: r[key] for r in MetricsLog.evals(rows) if r["step"] >= start}
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
    from probes.scores_by_threshold}). Right: histogram of every query's confidence per run
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
    against d, one line per run (errors: {label: array of metres, from probes.nearest_errors}).
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
