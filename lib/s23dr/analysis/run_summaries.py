"""A stage's runs: trained unless current, their metrics logs read, and each run's and
arm's headline numbers beside the baseline's."""

import time

import pandas as pd

from .recipes import what_changed
from ..experiments import main_chain, stage_runs
from ..rundir import MetricsLog
from ..train import run_stage


def train_stage(params, runs="runs", device=None, init=None):
    """Train every run of a stage unless current (`train.run_stage`, retraining a stale run).

    Returns the final checkpoints (in `stage_runs` order) and the `Run`s trained now, so a page
    that only reads its runs can say when it had to train one.
    """
    start = time.time()
    finals = run_stage(params, runs, device, init=init, restart=True, progress=False)
    return finals, [run for run, path in zip(stage_runs(params, runs), finals) if path.stat().st_mtime >= start]


def run_metrics(params, runs="runs"):
    """{Run: metrics rows} of each run of a stage; a run not trained yet is left out."""
    out = {}
    for run in stage_runs(params, runs):
        log = run.dir / MetricsLog.FILE
        if log.is_file():
            out[run] = MetricsLog.read(log)
    return out


def summary(rows, params):
    """A run's headline numbers: the final evaluation's HSS, F1, IoU and train/val loss ratio
    (`MetricsLog.final`), its final global step, and its minutes of training (the training
    loop's time read from the log's throughput, evaluations not counted)."""
    last = MetricsLog.final(rows)
    step, seconds = params["schedule"]["start_step"], 0.0
    for row in MetricsLog.trains(rows):
        seconds += (row["step"] - step) * params["train"]["batch_size"] / row["samples_per_s"]
        step = row["step"]
    return {"hss": last["hss"], "f1": last["f1"], "iou": last["iou"], "ratio": last["ratio"],
            "steps": last["step"], "minutes": seconds / 60}


def arm_numbers(params, runs="runs"):
    """{arm: DataFrame of `summary` per seed (rows) with its mean and standard deviation} of
    each arm of a stage (the stage, or each LR of its sweep), from the runs' logs."""
    tables = {}
    for run, rows in run_metrics(params, runs).items():
        tables.setdefault(run.arm, {})[run.seed] = summary(rows, run.params)
    return {arm: pd.DataFrame(rows).T.rename_axis("seed") for arm, rows in tables.items()}


def key_numbers(recipes, numbers, baseline):
    """The baseline's "Key Numbers" table from our runs: per stage the mean (and standard deviation)
    over its seeds of the final evaluation (`arm_numbers`), beside the baseline's figures."""
    rows = []
    for name in main_chain():
        table, theirs = numbers[name][name], baseline["stages"][name]
        rows.append({"stage": name, "seeds": len(table), "steps": recipes[name]["schedule"]["end_step"],
                     "HSS": table["hss"].mean(), "HSS sd": table["hss"].std(), "F1": table["f1"].mean(),
                     "IoU": table["iou"].mean(), "what changed": what_changed(recipes[name]),
                     "baseline steps": theirs["step"], "baseline HSS": theirs["hss"],
                     "baseline F1": theirs["f1"], "baseline IoU": theirs["iou"]})
    return pd.DataFrame(rows).set_index("stage").style.format(precision=3, na_rep="—")


def how_runs_ran(params, runs="runs"):
    """One row per run of a stage: how it computed (`inference.how_it_ran`, logged at its start)."""
    rows = {run.label: MetricsLog.run_row(log) or {} for run, log in run_metrics(params, runs).items()}
    return pd.DataFrame({label: {k: v for k, v in row.items() if k not in ("step", "kind")}
                         for label, row in rows.items()}).T


def all_benchmarks(recipes, numbers, baseline, profile):
    """The baseline's "All benchmarks" rows (`baseline["benchmarks"]`) with our three stages'
    arms appended: the mean over their seeds (`arm_numbers`) at this profile's point counts."""
    theirs = [{"model": f"baseline: {r['model']}", "points": r["points"], "HSS": r["hss"], "F1": r["f1"],
               "IoU": r["iou"]} for r in baseline["benchmarks"]]
    ours = [{"model": f"ours ({profile}): {arm}, mean of {len(table)}", "points": recipes[name]["data"]["points"],
             "HSS": table["hss"].mean(), "F1": table["f1"].mean(), "IoU": table["iou"].mean()}
            for name in main_chain() for arm, table in numbers[name].items()]
    return pd.DataFrame(theirs + ours).set_index("model").astype({"points": "Int64"})


def final_ratios(numbers):
    """The final evaluation's val/train loss ratio of every run, one row per arm, one column per seed."""
    return pd.DataFrame({arm: table["ratio"] for by_arm in numbers.values() for arm, table in by_arm.items()}).T
