"""Training throughput: `python -m s23dr.bench [--profile full] [--device cuda] [--data URI] [--loader-only] [--out FILE.json]`.

For each stage's point count and batch size (stage 1 and stage 2 of the profile) it measures

- loader: items/s of the trainer's data path (`loop.batches`: arrow rows, fitting and
  augmentation, collate) in this one process, which is what one loader worker sustains,
  and with the profile's `data.num_workers` worker processes. Needs no accelerator.
- compute: training samples/s of the step alone (forward, loss, backward, AdamW) on
  one batch already on the device, the median of `--steps` steps each timed to its end; the
  model's FLOPs per sample (`torch.utils.flop_counter`) and the achieved FLOP/s against the
  device's measured dense-matmul peak.
- trainer: samples/s of the trainer's whole step: its loader, the copies to the device and
  the step, over `--steps` steps timed together (the host runs ahead as in training).
- evaluation: the seconds it stalls training at the profile's scene counts, its scenes made
  ready once and its scoring in the background as the trainer does both, and their share of
  the training time between two evaluations (`evaluation`).

The data is `--data` (a dataset URI with `{points}`, as params data.train), else a small
synthetic dataset in the real data's schema written to a temporary folder (`--scenes` a
split). Prints a table; `--out` also writes the rows as JSON for the book's
reproducibility chapter.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import rundir
from .config import ParamsError
from .data import SceneDataset, check_device, collate, open_split, to_device
from .experiments import point_stages
from .inference import NO_AUGMENT, Validation, score_predictions, scoring_pool, uses_bf16
from .world.sampling import sample_scene
from .world.synthetic import generate_scene
from .synthetic_data import build_dataset
from .loop import ForwardLoss, batches, build, forward_loss, scoring_workers, train_step

#: Batches the loader figures are timed over, after LOADER_WARMUP (which start the workers).
LOADER_BATCHES, LOADER_WARMUP = 16, 2


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, dtype, n=4096, repeats=10):
    """Measured FLOP/s of a square matmul: the device's practical dense peak for `dtype`."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def synthetic_batch(points, batch_size, device):
    """A batch of real-looking scenes (the synthetic generator), repeated to `batch_size`."""
    scenes = [sample_scene(generate_scene(0, i, "train"), points, seed=0) for i in range(min(8, batch_size))]
    dataset = SceneDataset(scenes, points, {"rotate": True, "flip": True}, seed=0)
    return to_device(collate([dataset[i % len(scenes)] for i in range(batch_size)]), device)


def measure(params, device, steps, warmup):
    """Samples/s (the median step), FLOPs per sample and peak memory of training steps on one
    batch at these params."""
    model, criterion, optimizer = build({**params, "train": {**params["train"], "seed": 0}}, device)
    model.train()
    forward = forward_loss(model, criterion, params, device)  # as the trainer runs it
    batch_size = params["train"]["batch_size"]
    batch = synthetic_batch(params["data"]["points"], batch_size, device)

    with FlopCounterMode(display=False) as counter:  # the same step eager: a compiled one hides its FLOPs
        ForwardLoss(model, criterion, params, device)(batch)["total"].backward()
    flops = counter.get_total_flops() / batch_size
    for _ in range(warmup):
        train_step(forward, optimizer, batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        train_step(forward, optimizer, batch)
        sync(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"samples_per_s": batch_size / seconds, "train_gflop_per_sample": flops / 1e9,
            "achieved_tflops": flops * batch_size / seconds / 1e12, "peak_memory_gib": peak / 2 ** 30,
            "step_s_spread": [min(times), max(times)]}


def loader_rate(dataset, params, workers):
    """Items/s that `loop.batches` delivers with `workers` loader processes (0: this process)."""
    data = batches(dataset, {**params, "data": {**params["data"], "num_workers": workers}}, torch.device("cpu"))
    for _ in range(LOADER_WARMUP):
        next(data)
    start = time.perf_counter()
    items = sum(len(next(data)["order_id"]) for _ in range(LOADER_BATCHES))
    return items / (time.perf_counter() - start)


def trainer_parts(params, device, dataset):
    """(model, criterion, optimizer, compiled forward, batches) as `loop.train` starts them,
    the model as `measure` builds it: what a measurement of the trainer's step runs."""
    model, criterion, optimizer = build({**params, "train": {**params["train"], "seed": 0}}, device)
    model.train()
    return model, criterion, optimizer, forward_loss(model, criterion, params, device), batches(dataset, params, device)


def trainer_rate(params, device, dataset, steps, warmup):
    """Samples/s of the trainer's whole step: its loader (`loop.batches`), the copies to the
    device and `loop.train_step`, as `loop.train` runs them (`trainer_parts`)."""
    model, criterion, optimizer, forward, data = trainer_parts(params, device, dataset)
    for _ in range(warmup):
        train_step(forward, optimizer, to_device(next(data), device))
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(forward, optimizer, to_device(next(data), device))
    sync(device)
    return steps * params["train"]["batch_size"] / (time.perf_counter() - start), model, criterion


def evaluation(model, criterion, params, device, val_scenes, train_scenes, step_s):
    """An evaluation's cost at the profile's scene counts: the seconds it stalls training and
    their share of the training time between two evaluations, S / (S + train.eval_every · step_s).

    The trainer makes its evaluation scenes ready once (`inference.Validation`: read, fitted,
    batched and on the device), runs the model's part of an evaluation at its step and scores
    it in the background (`loop.Evaluations`), so S is the model's part plus whatever scoring
    outlasts the training until the next evaluation. Each is projected from per-scene costs
    measured here, times the scenes an evaluation takes: the model's outputs and loss on a
    scene, and the post-processing and scoring of a validation scene in the trainer's scoring
    processes; the one-time making ready is reported per scene beside them. The scoring is
    timed on each scene's GT segments as the predictions, all confident: an untrained model's
    outputs would pass no confidence threshold and cost the post-processing nothing. With
    eval.max_scenes null the validation split counts data.synthetic.val scenes (the synthetic
    default stands in for the seed's 1,024)."""
    ev = params["eval"]
    n_val = ev["max_scenes"] or params["data"]["synthetic"]["val"]
    n_train = ev["train_scenes"] if ev["max_scenes"] is None else min(ev["max_scenes"], ev["train_scenes"])

    def timed(fn):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        return out, time.perf_counter() - start

    model.eval()
    validation, ready_s = timed(lambda: Validation(val_scenes, params, device, train_scenes))
    held = sum(len(batch["order_id"]) for batch in validation.val + validation.train)
    _, forward_s = timed(lambda: validation.run(model, criterion))
    val = validation.scenes
    items = [SceneDataset(val, params["data"]["points"], NO_AUGMENT)[i] for i in range(len(val))]
    segments = np.stack([item["gt_segments"] for item in items])
    conf = np.stack([item["gt_mask"] for item in items]).astype(np.float32)
    workers = scoring_workers(params)
    pool = scoring_pool(workers)
    list(pool.map(abs, range(workers)))  # the processes started, as in a trainer after its first evaluation
    _, score_s = timed(lambda: score_predictions(val, segments, conf, params, pool))
    model_s, scoring_s = (n_val + n_train) * forward_s / held, n_val * score_s / len(val)
    between = params["train"]["eval_every"] * step_s
    stall = model_s + max(0.0, scoring_s - between)
    return {"eval_val_scenes": n_val, "eval_train_scenes": n_train, "eval_ready_s_per_scene": ready_s / held,
            "eval_s_per_scene": forward_s / held, "eval_score_s_per_scene": score_s / len(val),
            "eval_scoring_workers": workers, "eval_scoring_s": scoring_s, "eval_s": stall,
            "eval_share": stall / (stall + between)}


def save_result(out, record, argv, params):
    """Write a benchmark script's `record` to `out` (JSON, atomically) with what reruns it: the
    command (`sys.argv`: the script and its arguments), the resolved params it ran with and
    the code version of training (`rundir.code_version`). `benchmarks/rerun.py FILE` runs it again."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "command": list(argv), "params": params, "code_version": rundir.code_version("train")}
    with rundir.atomic_write(out) as f:
        f.write(json.dumps(record, indent=1).encode())


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} CPU, {torch.get_num_threads()} threads"


def cpu_name():
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows."""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m s23dr.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 100 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 / 1)")
    parser.add_argument("--data", help="a dataset URI with {points} (default: a synthetic one in a temporary folder)")
    parser.add_argument("--scenes", type=int, default=64, help="scenes a split of the synthetic default holds")
    parser.add_argument("--loader-only", action="store_true", help="measure the loader alone (any CPU); its rows lack the step's "
                        "figures that the book reads from benchmarks/results/")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        return bench(args)
    except (ParamsError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def bench(args):
    """Measure each stage's row at the parsed arguments; print it, and write them all to `args.out`."""
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps should be an integer >= 1, got {args.steps}")
    if args.warmup is not None and args.warmup < 0:
        raise ValueError(f"--warmup should be an integer >= 0, got {args.warmup}")
    if args.scenes < 1:
        raise ValueError(f"--scenes should be an integer >= 1, got {args.scenes}")
    if args.out:  # before the minutes of measuring
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        rundir.check_writable(args.out, "--out")
    device = check_device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps or (100 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    stages = point_stages(args.profile, Path(__file__).resolve().parents[2] / "params", args.set)
    with tempfile.TemporaryDirectory(prefix="s23dr-bench-") as folder:
        data = args.data
        if data is None:
            points = sorted({params["data"]["points"] for params in stages.values()})
            build_dataset(folder, args.scenes, args.scenes, points, workers=1)
            data = f"{folder}/sampled_{{points}}"
        rows = [measure_stage(stage, params, device, data, steps, warmup, args.loader_only)
                for stage, params in stages.items()]
    if args.out:
        with rundir.atomic_write(args.out) as f:
            f.write(json.dumps(rows, indent=1).encode())
    return 0


def measure_stage(stage, params, device, data, steps, warmup, loader_only):
    """One stage's row (see the module docstring), printed as it is measured."""
    params = {**params, "data": {**params["data"], "train": f"{data}:train", "val": f"{data}:validation"}}
    train_scenes = open_split(params, "train", progress=False)
    dataset = SceneDataset(train_scenes, params["data"]["points"], params["data"]["augment"], params["train"]["seed"])
    bf16 = uses_bf16(params, device)
    row = {"device": device_name(device), "cpu": f"{cpu_name()} ({os.cpu_count()} cores, "
           f"{torch.backends.cpu.get_cpu_capability()})", "profile": params["profile"], "stage": stage,
           "points": params["data"]["points"], "batch_size": params["train"]["batch_size"],
           "loader_items_per_s_per_process": loader_rate(dataset, params, 0),
           "loader_workers": params["data"]["num_workers"]}
    if params["data"]["num_workers"]:
        row["loader_items_per_s"] = loader_rate(dataset, params, params["data"]["num_workers"])
    line = (f"{row['cpu']} | {stage} {row['points']} pts x {row['batch_size']} | loader "
            f"{row['loader_items_per_s_per_process']:.0f} items/s a process"
            + (f", {row['loader_items_per_s']:.0f} with {row['loader_workers']} workers" if "loader_items_per_s" in row else ""))
    if loader_only:
        print(line, flush=True)
        return row
    peak = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32, n=4096 if device.type == "cuda" else 2048)
    row.update(precision="bf16" if bf16 else "fp32", compile=params["train"]["compile"],
               compile_mode=params["train"]["compile_mode"], **measure(params, device, steps, warmup),
               matmul_peak_tflops=peak / 1e12)
    row["fraction_of_peak"] = row["achieved_tflops"] / row["matmul_peak_tflops"]
    row["trainer_samples_per_s"], model, criterion = trainer_rate(params, device, dataset, steps, warmup)
    step_s = row["batch_size"] / row["trainer_samples_per_s"]
    row.update(evaluation(model, criterion, params, device, open_split(params, "val", progress=False),
                          train_scenes, step_s))
    print(f"{row['device']} | {line} | {row['precision']}"
          f"{' compiled (' + row['compile_mode'] + ')' if row['compile'] else ''} | compute {row['samples_per_s']:.1f} "
          f"samples/s (median of {steps}) | trainer step {row['trainer_samples_per_s']:.1f} samples/s | "
          f"{row['train_gflop_per_sample']:.2f} GFLOP/sample (fwd+bwd) | {row['achieved_tflops']:.3f} TFLOP/s = "
          f"{100 * row['fraction_of_peak']:.1f}% of {row['matmul_peak_tflops']:.2f} matmul peak | "
          f"peak memory {row['peak_memory_gib']:.2f} GiB | evaluation ({row['eval_val_scenes']} val + "
          f"{row['eval_train_scenes']} train scenes, made ready once at {1e3 * row['eval_ready_s_per_scene']:.2f} ms a "
          f"scene) stalls training {row['eval_s']:.1f} s = "
          f"{100 * row['eval_share']:.2f}% of the training between two, scoring {row['eval_scoring_s']:.1f} s "
          f"in {row['eval_scoring_workers']} processes beside it", flush=True)
    return row


if __name__ == "__main__":
    raise SystemExit(main())
