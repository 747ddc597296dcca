"""What a page says of its recipe: the keys that tell the stages apart, and where a
profile departs from the baseline's recipe (the same params at `full`)."""

import pandas as pd

from .. import checkpoint
from .evidence import passes
from ..config import load_params
from ..data import data_uri, trains_on_synthetic
from ..experiments import stage_runs


def recipe_table(params):
    """The keys that tell the stages apart, one row per run (one per LR of `sweep_lr`)."""
    rows = []
    for run in stage_runs(params, "."):
        used, sched = run.params, run.params["schedule"]
        cooldown = sched["cooldown_start"]
        rows.append({"run": run.label, "init_from": used["init_from"] or "scratch",
                     "points": used["data"]["points"], "batch": used["train"]["batch_size"],
                     "steps": f"{sched['start_step']} -> {sched['end_step']}", "lr": f"{sched['lr']:g}",
                     "warmup": sched["warmup"],
                     "cooldown": "none" if cooldown is None else f"{cooldown} +{sched['cooldown_steps']}",
                     "endpoint": used["loss"]["endpoint"]["weight"], "train data": data_uri(used, "train")})
    return pd.DataFrame(rows).set_index("run")


def data_sizes(params):
    """(training scenes, validation scenes evaluated, passes over each training scene) of a
    run: the synthetic dataset's sizes (at `full`, base.yaml's sizes mirror the real splits')."""
    syn = params["data"]["synthetic"]
    val = syn["val"] if params["eval"]["max_scenes"] is None else min(syn["val"], params["eval"]["max_scenes"])
    return syn["train"], val, round(passes(params, syn["train"]), 1)


#: `departures`' column of the baseline's recipe, as the stage notebooks' recorded regression
#: output names it (the baseline was once called the seed).
BASELINE_RECIPE = "seed's recipe"


def departures(params, path):
    """Where `params` (a profile's run of the params file `path`) departs from the baseline's
    recipe (the same file at `full`): every params key whose value differs, ours beside the
    baseline's (the scaled steps, LRs, points and batch too), the data's sizes and the passes
    over each training scene that follow, and, when the run trains on synthetic data, the
    world it was made in (the baseline trained on the real data); empty at `full`. Every stage
    page shows it, so nothing a profile changes is silent."""
    full = load_params(path, "full")
    ours, baseline = (checkpoint.flatten(p) for p in (params, full))
    rows = [{"key": key, "this profile": ours.get(key), BASELINE_RECIPE: baseline.get(key)}
            for key in sorted(ours.keys() | baseline.keys()) if key != "profile" and ours.get(key) != baseline.get(key)]
    rows += [{"key": key, "this profile": a, BASELINE_RECIPE: b}
             for key, a, b in zip(("training scenes", "validation scenes evaluated", "passes per training scene"),
                                  data_sizes(params), data_sizes(full)) if a != b]
    if trains_on_synthetic(params):
        rows += [{"key": key, "this profile": value, BASELINE_RECIPE: "real data"}
                 for key, value in sorted(ours.items()) if key.startswith("data.synthetic.world.")]
    return pd.DataFrame(rows, columns=["key", "this profile", BASELINE_RECIPE]).drop_duplicates("key").set_index("key")


def what_changed(recipe):
    """What a stage changes from the one it starts from, in words read from its params."""
    start = f"from {recipe['init_from']}" if recipe["init_from"] else "from scratch"
    endpoint = ", endpoint loss" if recipe["loss"]["endpoint"]["weight"] > 0 else ""
    cooldown = ", cooldown" if recipe["schedule"]["cooldown_start"] is not None else ""
    return f"{recipe['data']['points']} points {start}, lr {recipe['schedule']['lr']:g}{cooldown}{endpoint}"
