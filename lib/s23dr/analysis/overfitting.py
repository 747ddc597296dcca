"""Claim 1's regime, as `benchmarks/overfitting.py` measured it: where training from scratch
overfits at the profile's budget (the book, Results: claim 1)."""

import json
from pathlib import Path

import pandas as pd

#: The sweep's saved result: each from-scratch arm trained on the first N training scenes.
SWEEP = Path("benchmarks/results/overfitting.json")


def sweep_table(path=SWEEP):
    """One row per arm and training-set size: the passes over each scene, the val/train loss
    ratio at the last evaluation and its highest, and the HSS at the last evaluation."""
    record = json.loads(Path(path).read_text())
    rows = [{"arm": run["stage"], "points": run["points"], "training scenes": run["train_scenes"],
             "passes per scene": run["passes"], "ratio at the end": run["evals"][-1]["ratio"],
             "highest ratio": max(e["ratio"] for e in run["evals"]), "HSS at the end": run["evals"][-1]["hss"]}
            for run in record["runs"]]
    return pd.DataFrame(rows).sort_values(["training scenes", "points"], ascending=[False, True]).set_index(
        ["training scenes", "arm"])
