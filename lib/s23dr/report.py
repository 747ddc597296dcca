"""A training notebook's report (the book, Stages): each stage and ablation notebook is its
narrative plus the calls of one `StageReport`, so the five pages show the same things the
same way and cannot drift apart.

The stages a page draws beside its own on the step axis come from params alone: the chain
of `init_from`, and for an ablation the stage file it inherits from (`inherit:`).
The seed's figures a page quotes come from `params/seed_results.yaml`.
"""

from pathlib import Path

import pandas as pd
import yaml
from myst_nb import glue

from . import figures, pipeline
from .config import load_params, read_yaml

SEED_RESULTS = "params/seed_results.yaml"


def seed_results():
    """The seed's reported figures (params/seed_results.yaml)."""
    return yaml.safe_load(open(SEED_RESULTS))


def upstream_stages(path, profile):
    """The stages drawn before the one of params file `path`: its `init_from` chain, oldest
    first, then the stage file it inherits from when that is a stage (an ablation's)."""
    folder = Path(path).parent
    chain, name = [], load_params(path, profile)["init_from"]
    while name:
        chain.insert(0, name)
        name = load_params(folder / f"{name}.yaml", profile)["init_from"]
    parent = read_yaml(path).get("inherit")
    inherited = read_yaml(folder / parent).get("stage") if parent else None  # base.yaml names none
    return chain + [inherited] if inherited and inherited not in chain else chain


class StageReport:
    """The sections of a training notebook, in page order. Arguments are the notebook's
    parameters (see any stage notebook's parameters cell)."""

    def __init__(self, params, profile, data=None, runs="runs", init=None, device=None, seed=None):
        self.path, self.profile, self.data, self.runs = params, profile, data, runs
        self.init, self.device, self.seed = init, device, seed
        self.recipe = pipeline.notebook_params(params, profile, data, seed)
        self.stage = self.recipe["stage"]
        self.seed_figures = seed_results()
        self.finals, self.minutes, self.shown = None, None, None
        glue("profile", profile, display=False)

    def recipe_table(self):
        """The keys that tell the stages apart (`pipeline.recipe_table`), as text."""
        return pipeline.recipe_table(self.recipe).to_string()

    def departures(self):
        """Where this profile departs from the seed's recipe beyond the scaling, as text."""
        changes = pipeline.departures(self.recipe, self.path)
        return changes.to_string() if len(changes) else "none: the seed's recipe"

    def train(self):
        """Train the stage unless current (`pipeline.train_stage`); say which."""
        self.finals, self.minutes = pipeline.train_stage(self.recipe, self.runs, self.device, self.init)
        return "trained now" if self.minutes is not None else "cached: nothing to train"

    def checkpoints(self):
        """The checkpoints each run wrote, one line per run."""
        return "\n".join(f"{final.parent.name}: " + " ".join(sorted(p.name for p in final.parent.glob("step*.pt")))
                         for final in self.finals)

    def first_losses(self):
        """The regression check from a fixed init (`pipeline.first_losses`)."""
        return pipeline.first_losses(self.recipe)

    def metrics(self):
        """{run: metrics rows} of the upstream stages and this one, on one step axis."""
        if self.shown is None:
            self.shown = {}
            for name in upstream_stages(self.path, self.profile):
                upstream = pipeline.notebook_params(Path(self.path).parent / f"{name}.yaml", self.profile,
                                                    self.data, self.seed)
                self.shown.update(pipeline.run_metrics(upstream, self.runs))
            self.shown.update(pipeline.run_metrics(self.recipe, self.runs))
        return self.shown

    def curves(self, keys, name, kind="eval", references=None):
        """The figure of `keys` against the global step (`figures.curves`), glued as
        `<stage>_<name>`; the notebook shows it as it shows any figure it made."""
        fig = figures.curves(self.metrics(), keys, kind=kind, references=references)
        glue(f"{self.stage}_{name}", fig, display=False)

    def predictions(self, checkpoints=None, n=3, cols=3):
        """Predicted wireframes over the GT on `n` validation scenes for each checkpoint
        ({label: path}; default the final one), glued as `<stage>_wireframes`."""
        checkpoints = checkpoints or {None: self.finals[0]}
        scenes, frames, titles = [], [], []
        for label, path in checkpoints.items():
            some_scenes, some_frames, scores = pipeline.evaluate_checkpoint(path, self.device, n=n)
            scenes += some_scenes
            frames += some_frames
            titles += [(f"{label}: " if label else "") + f"{s['order_id']}<br>HSS {r.hss:.2f}"
                       for s, r in zip(some_scenes, scores.scenes)]
        view = figures.offline(figures.wireframes(scenes, frames, titles, cols=cols))
        glue(f"{self.stage}_wireframes", view, display=False)
        return view

    def numbers(self, seed_numbers):
        """The last evaluation's numbers (`pipeline.summary`), each glued as `<stage>_<key>`,
        beside the seed's (`seed_numbers`, None where the seed reports none)."""
        numbers = pipeline.summary(self.metrics()[self.stage], self.recipe, self.minutes)
        for key, value in numbers.items():
            glue(f"{self.stage}_{key}", value, display=False)
        return pd.DataFrame({"ours": numbers, "seed": seed_numbers}).style.format(precision=3, na_rep="—")
