"""Would a larger validation split narrow the verdicts' intervals? Score the paired arms on more scenes.

    .venv/bin/python benchmarks/validation_size.py [--scenes 128 512] [--profile cpu] [--runs runs]
        [--out benchmarks/results/validation_size/pairs.json]

A verdict reads a per-seed difference of two arms, each scored on the same first
`eval.max_scenes` validation scenes (128 at `cpu`). Its spread over seeds is the training's
noise plus that of scoring a finite sample of scenes. This scores the final checkpoints of
the decisive pairs (stage 2 against the points control, HSS; stage 3 against the endpoint
control, F1) on the first n validation scenes for each n of `--scenes`, from one validation
split of the largest n made like the profile's (the same generator and seed, so its first
scenes are the book's), and prints the sd over seeds of the per-seed differences at each n.
If it hardly falls with four times the scenes, the spread is the training's: more seeds, not
more scenes, narrow the intervals (the book, Results: how many seeds).
"""

import argparse
import sys
import tempfile

import numpy as np
import torch

from s23dr import checkpoint
from s23dr.bench import save_result
from s23dr.data import open_dataset
from s23dr.experiments import stage_params, stage_runs
from s23dr.inference import first, score_model
from s23dr.predict import load_model
from s23dr.synthetic_data import build_dataset

#: (arm A, arm B, the score their sub-claim reads).
PAIRS = (("stage2", "control_points", "hss"), ("stage3", "control_endpoint", "f1"))


def scores(params, runs, split, device):
    """{seed: per-scene scores [scenes, (hss, f1, iou)]} of every run of `params` on `split` (scenes)."""
    found = {}
    for run in stage_runs(params, runs):
        final = checkpoint.path_for(run.dir, run.params["schedule"]["end_step"])
        if final.is_file():
            model, trained = load_model(final, device)
            per_scene = score_model(model, split, trained, device)[1].scenes
            found[run.seed] = np.array([[s.hss, s.f1, s.iou] for s in per_scene])
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    recipes, device, rows = stage_params(args.profile), torch.device("cpu"), []
    syn = recipes["stage1"]["data"]["synthetic"]
    points = sorted({recipes[name]["data"]["points"] for pair in PAIRS for name in pair[:2]})
    with tempfile.TemporaryDirectory() as folder:
        paths = build_dataset(folder, 0, max(args.scenes), points=points, seed=syn["seed"], world=syn["world"])
        splits = {n: first(open_dataset(f"{path}:validation"), max(args.scenes)) for n, path in paths.items()}
        for a, b, metric in PAIRS:
            column = ("hss", "f1", "iou").index(metric)
            found = {arm: scores(recipes[arm], args.runs, splits[recipes[arm]["data"]["points"]], device)
                     for arm in (a, b)}
            seeds = sorted(found[a].keys() & found[b].keys())
            for n in args.scenes:
                diffs = [found[a][s][:n, column].mean() - found[b][s][:n, column].mean() for s in seeds]
                rows.append({"a": a, "b": b, "metric": metric, "scenes": n, "seeds": seeds,
                             "differences": [round(float(d), 4) for d in diffs],
                             "sd over seeds": round(float(np.std(diffs, ddof=1)), 4)})
                print(f"{metric} of {a} - {b} on {n:4d} scenes: sd over {len(seeds)} seeds "
                      f"{rows[-1]['sd over seeds']:.4f}, differences {rows[-1]['differences']}", flush=True)
    if args.out:
        save_result(args.out, {"profile": args.profile, "rows": rows}, sys.argv,
                    {name: recipes[name] for pair in PAIRS for name in pair[:2]})


if __name__ == "__main__":
    main()
