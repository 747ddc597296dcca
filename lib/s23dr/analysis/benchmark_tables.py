"""The results of the benchmark scripts kept in `benchmarks/results/`, read as tables (the
book, Results): the scripts take minutes each, so the book reads what they saved."""

import json
from pathlib import Path

import pandas as pd


def saved_runs(folder):
    """The JSON files a benchmark script saved in `folder`, read, in the order of their names."""
    return [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.json"))]


def learning_speed_table(folder="benchmarks/results/learning_speed"):
    """The runs of `benchmarks/learning_speed.py` saved in `folder`, one row each: what it
    tried, and its figures at its last step on the scenes it fitted (their transport term
    is saved as `sinkhorn`, its name when they ran)."""
    rows = []
    for run in saved_runs(folder):
        last = run["rows"][-1]
        rows.append({"run": run["label"], "world": run["world"], "scenes": run["scenes"], "steps": last["step"],
                     "HSS@0.7": last["hss"], "HSS@0.3": last["hss_low"], "highest confidence": last["max_conf"],
                     "GT mass in dustbin": last["gt_dustbin"], "best mass per GT": last["best_mass"],
                     "transport term": last["sinkhorn"], "reached HSS 0.8 at step": run["steps_to_target"]})
    return pd.DataFrame(rows).astype({"reached HSS 0.8 at step": "Int64"}).set_index("run")


def loss_choice_table(folder="benchmarks/results/loss_choice"):
    """The runs of `benchmarks/loss_choice.py` saved in `folder`, one row each: the loss tried,
    each stage's last validation HSS and F1, and whether it learns by the script's rule."""
    rows = []
    for run in saved_runs(folder):
        row = {"loss": run["label"]}
        for stage, record in run["stages"].items():
            last = record["eval"][-1]
            row.update({f"{stage} HSS": last["hss"], f"{stage} F1": last["f1"]})
        rows.append({**row, "learns": run["learns"]})
    return pd.DataFrame(rows).set_index("loss")


GENERALISATION_COLUMNS = ("HSS@0.7", "F1@0.7", "HSS@0.3", "median midpoint m", "median angle deg",
                          "median length m", "median endpoint m", "endpoints within thresh")


def generalisation_table(folder="benchmarks/results/generalisation"):
    """The runs of `benchmarks/generalisation.py` saved in `folder`, one row each: what the
    stage-1 variant tried, its steps, and its figures on the validation scenes."""
    rows = [{"run": run["label"], "steps": run["steps"], **{k: run[k] for k in GENERALISATION_COLUMNS}}
            for run in saved_runs(folder)]
    return pd.DataFrame(rows).sort_values("HSS@0.7").set_index("run")


def overfitting_table(folder="benchmarks/results/overfitting"):
    """The sweeps of `benchmarks/overfitting.py` saved in `folder` (claim 1's regime): one row per
    from-scratch arm, training-set size and batch, with the passes over each scene, the val/train
    loss ratio at the last evaluation and its highest, and the HSS at the last evaluation."""
    rows = [{"training scenes": run["train_scenes"], "batch": sweep["params"][run["stage"]]["train"]["batch_size"],
             "arm": run["stage"], "points": run["points"], "passes per scene": run["passes"],
             "ratio at the end": run["evals"][-1]["ratio"], "highest ratio": max(e["ratio"] for e in run["evals"]),
             "HSS at the end": run["evals"][-1]["hss"]}
            for sweep in saved_runs(folder) for run in sweep["runs"]]
    return pd.DataFrame(rows).sort_values(["training scenes", "batch", "points"], ascending=[False, False, True]).set_index(
        ["training scenes", "batch", "arm"])


def validation_size_table(path="benchmarks/results/validation_size/pairs.json"):
    """The runs of `benchmarks/validation_size.py`: per decisive pair and number of validation
    scenes, the sd over seeds of the per-seed difference (does a larger split narrow it?)."""
    rows = [{"pair": f"{row['metric']} of {row['a']} − {row['b']}", "validation scenes": row["scenes"],
             "seeds": len(row["seeds"]), "sd over seeds": row["sd over seeds"]}
            for row in json.loads(Path(path).read_text())["rows"]]
    return pd.DataFrame(rows).set_index(["pair", "validation scenes"])
