"""Where does training from scratch overfit at the profile's budget? Claim 1's regime, by measurement.

    .venv/bin/python benchmarks/overfitting.py [--scenes 2000 320 80] [--profile cpu]
        [--stages stage1 ablation_4096_scratch] [--seed 353] [--jobs 2] [--runs /tmp/overfitting]
        [--out benchmarks/results/overfitting/NAME.json]

The seed says that 4096 points from scratch overfits (val/train loss ratio 1.47 against
1.19 at 2048), after its stage 1 saw each training scene about 242 times. At the `cpu`
profile stage 1 sees each of its 2,000 training scenes 10 times, and neither arm overfits
(the book, Results: claim 1). This trains each from-scratch stage of `--stages` on the
first N training scenes of the synthetic dataset (the same generator and seed: the first N
scenes of the book's training split), for each N of `--scenes`, at the stage's own steps,
batch and schedule, so fewer scenes means more passes over each; and prints, at each
evaluation, the validation HSS and the val/train loss ratio (the training loss on the
first `eval.max_scenes` training scenes, all of them when N is smaller). The JSONs in
benchmarks/results/overfitting/ are such runs; the Results chapter tables them all for claim 1's regime.
"""

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from s23dr.bench import save_result
from s23dr.config import load_params
from s23dr.rundir import MetricsLog
from s23dr.synthetic_data import build_dataset
from s23dr.train import run_stage


def regime_params(stage, profile, scenes):
    """A from-scratch stage's params at `profile`, training on the first `scenes` training scenes."""
    params = load_params(f"params/{stage}.yaml", profile)
    root = Path(params["data"]["synthetic"]["root"]).parent / "overfitting" / f"train{scenes}"
    data = {**params["data"], "synthetic": {**params["data"]["synthetic"], "root": str(root), "train": scenes}}
    return {**params, "data": data}


def train_one(stage, profile, scenes, seed, runs):
    """Train one arm at `scenes` training scenes; its evaluations as (step, HSS, ratio) rows."""
    torch.set_num_threads(1)  # one thread a job, as the pipeline trains (an env var set now would come too late)
    params = regime_params(stage, profile, scenes)
    final = run_stage(params, Path(runs) / f"train{scenes}", restart=True, seed=seed, progress=False)[0]
    log = final.parent / MetricsLog.FILE
    return [{"step": r["step"], "hss": round(r["hss"], 4), "ratio": round(r["ratio"], 4)}
            for r in MetricsLog.evals(MetricsLog.read(log))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, nargs="+", default=[2000, 320, 80])
    parser.add_argument("--stages", nargs="+", default=["stage1", "ablation_4096_scratch"])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--seed", type=int, default=353)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", default="/tmp/overfitting")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    for scenes in args.scenes:  # every arm of one N reads the same dataset: made once, before training
        params = regime_params(args.stages[0], args.profile, scenes)
        syn, points = params["data"]["synthetic"], {regime_params(s, args.profile, scenes)["data"]["points"]
                                                   for s in args.stages}
        missing = [p for p in sorted(points) if not (Path(syn["root"]) / f"sampled_{p}").exists()]
        if missing:
            build_dataset(syn["root"], scenes, syn["val"], points=missing, seed=syn["seed"], world=syn["world"])
    jobs = [(stage, scenes) for scenes in args.scenes for stage in args.stages]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {job: pool.submit(train_one, *job[:1], args.profile, job[1], args.seed, args.runs) for job in jobs}
        results = []
        for (stage, scenes), future in futures.items():
            evals = future.result()
            params = regime_params(stage, args.profile, scenes)
            sched = params["schedule"]
            passes = (sched["end_step"] - sched["start_step"]) * params["train"]["batch_size"] / scenes
            results.append({"stage": stage, "train_scenes": scenes, "points": params["data"]["points"],
                            "passes": round(passes, 1), "seed": args.seed, "evals": evals})
            last = evals[-1]
            print(f"{stage:24s} {scenes:5d} scenes ({passes:6.1f} passes): final ratio {last['ratio']:.3f}, "
                  f"HSS {last['hss']:.3f}, peak HSS {max(e['hss'] for e in evals):.3f}", flush=True)
    if args.out:
        save_result(args.out, {"profile": args.profile, "runs": results}, sys.argv,
                    {s: regime_params(s, args.profile, args.scenes[0]) for s in args.stages})


if __name__ == "__main__":
    main()
