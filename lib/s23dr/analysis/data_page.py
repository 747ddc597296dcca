"""The data page (the book, The data at a glance): a profile's validation scenes at stage 1's
and stage 2's point counts, drawn in 3D, summed up in histograms, and their structural
coverage beside the baseline's figures.

`DataPage` reads the data once; each method is one section, glues what the book quotes from
it and returns what the notebook shows, as `StageReport` does for a stage.
"""

import numpy as np
import pandas as pd
from myst_nb import glue

from . import figures, views3d
from .notebook import baseline_results, notebook_params, split_at
from .. import pipeline
from ..inference import first
from ..world.sampling import structural_coverage


def common_scenes(samples, n=2):
    """[(scene, points)]: the first `n` scenes of the last sampling that every sampling of
    `samples` ({points: scenes}) holds, each at every point count in turn."""
    index = {points: {s["order_id"]: s for s in scenes} for points, scenes in samples.items()}
    last = list(index)[-1]
    ids = [i for i in index[last] if all(i in by_id for by_id in index.values())][:n]
    return [(index[points][i], points) for i in ids for points in index]


def coverage_table(samples, baseline):
    """({points: mean structural coverage}, the table of it beside the baseline's "structural
    points" at 2048 and 4096): `world.sampling.structural_coverage` over the scenes of each
    sampling of `samples` ({points: scenes}, the lower point count first)."""
    coverage = {n: float(np.mean([structural_coverage(s) for s in scenes])) for n, scenes in samples.items()}
    theirs = baseline["structural_coverage"]  # its definition is not stated
    table = pd.DataFrame({"points": list(coverage), "coverage (ours)": list(coverage.values()),
                          "baseline's points": [2048, 4096],
                          "the baseline's \"structural points\"": [theirs["points_2048"], theirs["points_4096"]]})
    return coverage, table.set_index("points")


class DataPage:
    """The data notebook's sections. Arguments are the notebook's parameters; the profile's
    synthetic data is built first unless `data` names other data."""

    def __init__(self, params, profile, data=None):
        self.baseline = baseline_results()
        recipe = notebook_params(params, profile, data)
        if data is None:
            pipeline.build_data(profile)
        self.points = pipeline.synthetic_points(profile)  # stage 1's and stage 2's point counts
        self.val = {n: first(split_at(recipe, n, "val"), recipe["eval"]["max_scenes"]) for n in self.points}
        self.n_train, self.n_val = (len(split_at(recipe, self.points[-1], split)) for split in ("train", "val"))
        glue("profile", profile, display=False)
        glue("data_train_scenes", self.n_train, display=False)
        glue("data_val_scenes", self.n_val, display=False)

    def scenes(self, n=2):
        """The first `n` validation scenes at every point count in 3D, glued as `data_scenes`."""
        pairs = common_scenes(self.val, n)
        titles = [f"{s['order_id']}<br>{points} points" for s, points in pairs]
        view = views3d.offline(views3d.wireframes([s for s, _ in pairs], titles=titles, cols=len(self.points)))
        glue("data_scenes", view, display=False)
        return view

    def overview(self):
        """Class and source shares and GT sizes (`figures.data_overview`), glued as `data_overview`."""
        glue("data_overview", figures.data_overview({f"{n} points": self.val[n] for n in self.points}), display=False)

    def coverage(self):
        """The structural coverage at each point count (`coverage_table`), glued as
        `data_coverage_table`, `data_points_{low,high}` and `data_coverage_{low,high}`."""
        coverage, table = coverage_table(self.val, self.baseline)
        for level, n in zip(("low", "high"), self.points):
            glue(f"data_points_{level}", n, display=False)
            glue(f"data_coverage_{level}", coverage[n], display=False)
        glue("data_coverage_table", table, display=False)
        return table.style.format({"coverage (ours)": "{:.1%}", "the baseline's \"structural points\"": "{:.0%}"})
