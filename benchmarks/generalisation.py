"""How well a variant of stage 1 generalises: train it on the training split, score the validation split.

    .venv/bin/python benchmarks/generalisation.py --label "what it tries" [--profile cpu]
        [--set model.decoder_reads_points=true ...] [--runs /tmp/generalisation]
        [--checkpoint PATH] [--out benchmarks/results/generalisation/NAME.json]

Trains stage 1 of the profile (default `cpu`) with the `--set` overrides, as the book
trains it (augmentation, the whole training split, stage 1's schedule), or with
`--checkpoint` scores a stage-1 checkpoint already trained with those overrides. Then,
on the first `eval.max_scenes` validation scenes, prints:
- HSS and corner F1 at confidence thresholds 0.3, 0.5 and the seed's 0.7;
- where the errors are: each GT segment paired one-to-one (Hungarian, on the endpoint
  distance) with a query, whatever its confidence, and the medians over those pairs of
  the midpoint distance, the angle, the length difference and the mean endpoint distance
  (metres, degrees), and the share of pairs whose mean endpoint distance (L1) is within
  `eval.vert_thresh`.
It is the second gate after `learning_speed.py` (which fits 64 scenes): what a change does
on validation scenes at the book's budget. The JSON files in
benchmarks/results/generalisation/ are such runs; the book's Method chapter cites them.
"""

import argparse
import json
import sys
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from s23dr.bench import save_result
from s23dr.config import load_params
from s23dr.data import data_uri, open_dataset
from s23dr.inference import first, predict_segments, score_predictions
from s23dr.losses import endpoint_distance
from s23dr.predict import load_model
from s23dr.train import run_stage

THRESHOLDS = (0.3, 0.5, 0.7)


def pair_errors(segments, gt, scale):
    """Per GT segment of `gt` [G,2,3], paired one-to-one with a query of `segments` [Q,2,3] on
    the endpoint distance: midpoint distance, angle (degrees), length difference and mean
    endpoint distance (metres; inputs in normalised units of scale `scale`)."""
    dist = endpoint_distance(torch.as_tensor(segments)[None], torch.as_tensor(gt)[None])[0].numpy()
    rows = []
    for q, g in zip(*linear_sum_assignment(dist)):
        p_vec, g_vec = segments[q, 1] - segments[q, 0], gt[g, 1] - gt[g, 0]
        p_len, g_len = np.linalg.norm(p_vec), np.linalg.norm(g_vec)
        cos = min(1.0, abs(p_vec @ g_vec) / max(p_len * g_len, 1e-12))
        rows.append((np.linalg.norm(segments[q].mean(0) - gt[g].mean(0)) * scale, np.degrees(np.arccos(cos)),
                     abs(p_len - g_len) * scale, dist[q, g] * scale))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs", default="/tmp/generalisation", help="where to train (a run directory per profile)")
    parser.add_argument("--checkpoint", help="score this stage-1 checkpoint instead of training")
    parser.add_argument("--label", required=True, help="what this run tries")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    params = load_params("params/stage1.yaml", args.profile, args.set)
    start = time.perf_counter()
    path = args.checkpoint or run_stage(params, args.runs, restart=True, seed=params["train"]["seed"])[0]
    model = load_model(path, torch.device("cpu"))[0]
    scenes = first(open_dataset(data_uri(params, "val")), params["eval"]["max_scenes"])
    segments, conf, _ = predict_segments(model, scenes, params, torch.device("cpu"))
    out = {"label": args.label, "profile": args.profile, "set": args.set, "checkpoint": str(path),
           "steps": params["schedule"]["end_step"], "threads": torch.get_num_threads(), "scenes": len(scenes)}
    if not args.checkpoint:
        out["train seconds"] = round(time.perf_counter() - start)
    for threshold in THRESHOLDS:
        at = {**params, "eval": {**params["eval"], "conf_threshold": threshold}}
        mean = score_predictions(scenes, segments, conf, at)[1].mean
        out[f"HSS@{threshold:g}"], out[f"F1@{threshold:g}"] = round(mean.hss, 4), round(mean.f1, 4)
    errors = np.array([row for scene, pred in zip(scenes, segments) for row in pair_errors(
        np.asarray(pred, np.float64), np.asarray(scene["gt_segments"], np.float64).reshape(-1, 2, 3),
        float(scene["scale"]))])
    for i, name in enumerate(("midpoint m", "angle deg", "length m", "endpoint m")):
        out[f"median {name}"] = round(float(np.median(errors[:, i])), 3)
    out["endpoints within thresh"] = round(float(np.mean(errors[:, 3] <= params["eval"]["vert_thresh"])), 4)
    print(json.dumps(out, indent=1))
    if args.out:
        save_result(args.out, out, sys.argv, params)


if __name__ == "__main__":
    main()
