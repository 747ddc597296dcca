"""A training notebook's page (the book, Stages): its sections, in page order.

Each stage and ablation notebook is its narrative plus the calls of one `StageReport`, so
the five pages show the same things the same way and cannot drift apart. The stages a
page draws beside its own on the step axis come from params alone: the chain of
`init_from`, and for an ablation the stage file it inherits from (`inherit:`). The
baseline's figures a page quotes come from `params/baseline_results.yaml`.
"""

from pathlib import Path

import pandas as pd
from myst_nb import glue

from . import claims, figures, point_counts, ruling, views3d
from .evidence import at_points, evaluation, gather, value
from .notebook import baseline_results, notebook_params
from .probes import evaluate_checkpoint, first_losses
from .recipes import BASELINE_RECIPE, departures, recipe_table
from .run_summaries import arm_numbers, how_runs_ran, run_metrics, train_stage
from ..experiments import stage_runs, upstream_stages
from ..rundir import MetricsLog


class StageReport:
    """The sections of a training notebook, in page order. Arguments are the notebook's
    parameters (see any stage notebook's parameters cell)."""

    def __init__(self, params, profile, data=None, runs="runs", init=None, device=None, seed=None):
        self.path, self.profile, self.data, self.runs = params, profile, data, runs
        self.init, self.device, self.seed = init, device, seed
        self.recipe = notebook_params(params, profile, data, seed)
        self.stage = self.recipe["stage"]
        self.baseline = baseline_results()
        self.finals, self.shown = None, None
        glue("profile", profile, display=False)
        glue(f"{self.stage}_points", self.recipe["data"]["points"], display=False)
        glue(f"{self.stage}_runs", len(stage_runs(self.recipe, runs)), display=False)

    def recipe_table(self):
        """The keys that tell the stages apart (`recipe_table`), as text."""
        return recipe_table(self.recipe).to_string()

    def departures(self):
        """Where this profile departs from the baseline's recipe beyond the scaling, as text (the
        notebooks' recorded regression output, whose words name the baseline the seed)."""
        changes = departures(self.recipe, self.path)
        return changes.to_string() if len(changes) else f"none: the {BASELINE_RECIPE}"

    def train(self):
        """Train the stage unless current (`train_stage`); say which."""
        self.finals, trained = train_stage(self.recipe, self.runs, self.device, self.init)
        return "trained now" if trained else "cached: nothing to train"

    def checkpoints(self):
        """The checkpoints each run wrote, one line per run."""
        return "\n".join(f"{run.label}: " + " ".join(sorted(p.name for p in final.parent.glob("step*.pt")))
                          for run, final in zip(stage_runs(self.recipe, self.runs), self.finals))

    def how_it_ran(self):
        """How each run computed (precision, device, CPU kernels, torch version, threads)."""
        return how_runs_ran(self.recipe, self.runs)

    def first_losses(self):
        """The regression check from a fixed init (`first_losses`)."""
        return first_losses(self.recipe)

    def metrics(self):
        """{run: metrics rows} of the upstream stages and this one, on one step axis."""
        if self.shown is None:
            self.shown = {}
            for name in upstream_stages(self.path):
                upstream = notebook_params(Path(self.path).parent / f"{name}.yaml", self.profile, self.data, self.seed)
                self.shown.update(run_metrics(upstream, self.runs))
            self.shown.update(run_metrics(self.recipe, self.runs))
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
            some_scenes, some_frames, scores = evaluate_checkpoint(path, self.device, n=n)
            scenes += some_scenes
            frames += some_frames
            titles += [(f"{label}: " if label else "") + f"{s['order_id']}<br>HSS {r.hss:.2f}"
                       for s, r in zip(some_scenes, scores.scenes)]
        view = views3d.offline(views3d.wireframes(scenes, frames, titles, cols=cols))
        glue(f"{self.stage}_wireframes", view, display=False)
        return view

    def forgetting(self, stage1, stage2):
        """Claim 3 seed by seed (the book, Results): each finetune run (this sweep's and
        `stage2`'s, params) against the model it started from, stage 1's final checkpoint scored
        at the finetune's point count (`point_counts`); its lowest and final evaluations, the fall
        from the start to the last against Δ (params/verdicts.yaml), and whether any training
        loss of the run rose above the untrained model's (`claims.divergence`): divergence, which
        says nothing about forgetting. Glued as `<stage>_forgetting`, and the fewest evaluations
        a run of this stage made as `<stage>_evaluations`."""
        recipes = {r["stage"]: r for r in (stage1, stage2, self.recipe)}
        evidence = gather(recipes, self.runs)
        dense = stage2["data"]["points"]
        starts = point_counts.rescore(recipes, self.runs, self.device, arms=(stage1["stage"],))
        starts = starts.get(at_points(stage1["stage"], dense), {})
        smallest = ruling.rules()["smallest_effect"]["hss"]
        rows = []
        for arm, by_seed in evidence.items():
            if arm == stage1["stage"]:
                continue
            for seed, log in sorted(by_seed.items()):
                if seed not in starts:
                    continue
                start, worst, last = value(starts[seed], "hss"), evaluation(log, "lowest hss"), value(log, "hss")
                rows.append({"arm": arm, "seed": seed, f"start (stage 1 at {dense} points)": start,
                             "lowest HSS": worst["hss"], "at step": worst["step"],
                             "evaluations": len(MetricsLog.evals(log)), "final HSS": last,
                             "fall from the start": start - last, f"fall beyond Δ {smallest:g}": start - last > smallest,
                             "diverged": claims.divergence(log, evidence[stage1["stage"]][seed]) is not None})
        frame = pd.DataFrame(rows).set_index(["arm", "seed"])
        own = frame[frame.index.get_level_values("arm").isin({run.arm for run in stage_runs(self.recipe, self.runs)})]
        glue(f"{self.stage}_evaluations", int(own["evaluations"].min()) if len(own) else 0, display=False)
        table = frame.style.format(precision=3)
        glue(f"{self.stage}_forgetting", table, display=False)
        return table

    def numbers(self, baseline_numbers, beside=None):
        """Each run's last-evaluation numbers (`summary`) and, per arm, their mean over the
        seeds, glued as `<stage>_<key>` (a sweep's arm as `<stage>_<LR as the params file
        writes it>_<key>`), beside the baseline's (`baseline_numbers`, None where it reports
        none) and the arms of the stage params `beside` (not glued)."""
        as_written = {float(lr): written for lr, written in
                      zip(self.recipe["sweep_lr"] or [], notebook_params(self.path, "full")["sweep_lr"] or [])}
        lr_of = {run.arm: run.lr for run in stage_runs(self.recipe, self.runs)}
        columns = {}
        for recipe in [self.recipe] + ([beside] if beside else []):
            for arm, table in arm_numbers(recipe, self.runs).items():
                mean = table.mean()
                if recipe is self.recipe:
                    lr = lr_of[arm]
                    prefix = self.stage + (f"_{as_written[lr]:g}" if lr is not None else "")
                    for key, number in mean.items():
                        glue(f"{prefix}_{key}", float(number), display=False)
                columns[f"{arm}: mean of {len(table)}"] = mean
                if len(table) > 1:
                    columns[f"{arm}: sd"] = table.std()
                    columns.update({f"{arm} seed={s}": row for s, row in table.iterrows()})
        columns["the baseline's"] = pd.Series(baseline_numbers)
        return pd.DataFrame(columns).style.format(precision=3, na_rep="—")
