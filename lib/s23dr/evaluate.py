"""Score a checkpoint or a submission: `python -m s23dr.evaluate CHECKPOINT|submission.json DATA_URI`.

Prints the mean HSS / F1 / IoU over the scenes (the official metric: the book, Introduction) and,
with `--per-scene FILE`, writes one JSON record per scene. Every scene needs its GT
fields; a scene without them is named.
"""

import argparse
from dataclasses import asdict
import json
import sys
from pathlib import Path

import torch

from . import checkpoint
from .data import open_dataset
from .metrics import score_scenes
from .predict import load_model, submission


def read_submission(path):
    """{order_id: (vertices, edges)} from a submission file, with a clear error for a bad one."""
    try:
        records = json.loads(Path(path).read_text())
        return {r["order_id"]: (r["wf_vertices"], r["wf_edges"]) for r in records}
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: not a submission (a JSON list of "
                         f"{{order_id, wf_vertices, wf_edges}}; {type(err).__name__}: {err})") from None


def score_source(source, data_uri, device="cpu"):
    """Per-scene and mean scores of a checkpoint (`.pt`) or a submission (`.json`) on a
    dataset: a checkpoint at the thresholds of its params (`eval.vert_thresh`,
    `eval.edge_thresh`), a submission at the official metric's own."""
    dataset = open_dataset(data_uri)
    scenes = [dataset[i] for i in range(len(dataset))]
    thresholds = {}
    if str(source).endswith(".json"):
        predicted = read_submission(source)
        missing = [s["order_id"] for s in scenes if s["order_id"] not in predicted]
        if missing:
            raise ValueError(f"{source}: no prediction for {len(missing)} scenes, e.g. {missing[0]}")
    else:
        model, params = load_model(source, torch.device(device))
        thresholds = {key: params["eval"][key] for key in ("vert_thresh", "edge_thresh")}
        predicted = {r["order_id"]: (r["wf_vertices"], r["wf_edges"])
                     for r in submission(model, params, scenes, torch.device(device))}
    return score_scenes([predicted[s["order_id"]] for s in scenes],
                        [(s["gt_vertices"], s["gt_edges"]) for s in scenes], **thresholds), scenes


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m s23dr.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a checkpoint (.pt) or a submission (.json)")
    parser.add_argument("data", help="dataset URI with GT, e.g. data/synthetic/sampled_1024:validation")
    parser.add_argument("--per-scene", help="write per-scene scores to this JSON file")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        if args.per_scene:
            checkpoint.check_writable(args.per_scene, "--per-scene")
        result, scenes = score_source(args.source, args.data, args.device)
        if args.per_scene:
            rows = [{"order_id": s["order_id"], **asdict(r)} for s, r in zip(scenes, result.scenes)]
            with checkpoint.atomic_write(args.per_scene) as f:
                f.write(json.dumps(rows, indent=1).encode())
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mean = result.mean
    print(f"{len(scenes)} scenes: HSS {mean.hss:.4f}  F1 {mean.f1:.4f}  IoU {mean.iou:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
