"""Does keeping freed memory in glibc's heap make a training step faster? Time it both ways.

    .venv/bin/python benchmarks/allocator.py [--stages stage1 stage3] [--steps 100] [--repeats 2]
        [--out benchmarks/results/allocator/steps.json]

For each stage of the `cpu` profile, trains `--steps` compiled steps (after 3 untimed ones,
which compile or load the step) in a fresh process on one thread, once with glibc's malloc as
it comes and once after `memory.keep_freed_memory`, the two alternating `--repeats` times (the
machine's speed drifts). Prints per stage and setting the CPU time and the page faults a step,
and whether the two settings ended with the same weights, bit for bit (they must: only where
memory comes from changes). The trainer keeps freed memory since this measurement (the book,
Method: training).
"""

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from s23dr.bench import save_result, trainer_parts
from s23dr.data import SceneDataset, open_split, to_device
from s23dr.experiments import stage_params
from s23dr.loop import train_step
from s23dr.memory import keep_freed_memory


def one(stage, steps, keep):
    """Train `steps` steps of `stage` in this process: (CPU s a step, page faults a step, weights' hash)."""
    if keep:
        keep_freed_memory()
    torch.set_num_threads(1)
    params = stage_params("cpu")[stage]
    device = torch.device("cpu")
    dataset = SceneDataset(open_split(params, "train", False), params["data"]["points"], params["data"]["augment"],
                           params["train"]["seed"])
    model, _, optimizer, forward, data = trainer_parts(params, device, dataset)
    for _ in range(3):
        train_step(forward, optimizer, to_device(next(data), device))["total"].item()
    cpu, faults = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        train_step(forward, optimizer, to_device(next(data), device))["total"].item()
    cpu, faults = time.process_time() - cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    weights = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()[:16]
    return {"cpu_s_per_step": cpu / steps, "faults_per_step": faults / steps, "weights": weights}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["stage1", "stage3"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "KEEP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one(args.child[0], args.steps, args.child[1] == "1")))
        return
    rows = []
    for stage in args.stages:
        runs = {False: [], True: []}
        for _ in range(args.repeats):
            for keep in (False, True):
                out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child", stage, str(int(keep))],
                                     check=True, capture_output=True, text=True).stdout
                runs[keep].append(json.loads(out.strip().splitlines()[-1]))
        for keep, found in runs.items():
            rows.append({"stage": stage, "malloc": "kept freed memory" if keep else "glibc's defaults",
                         "cpu_ms_per_step": [round(1000 * r["cpu_s_per_step"], 1) for r in found],
                         "median_cpu_ms_per_step": round(1000 * statistics.median(r["cpu_s_per_step"] for r in found), 1),
                         "faults_per_step": round(statistics.median(r["faults_per_step"] for r in found)),
                         "same_weights": len({r["weights"] for r in runs[False] + runs[True]}) == 1})
            print(json.dumps(rows[-1]))
    if args.out:
        save_result(args.out, {"steps": args.steps, "repeats": args.repeats, "rows": rows}, sys.argv,
                    stage_params("cpu")[args.stages[0]])


if __name__ == "__main__":
    main()
