"""Training throughput: `python -m s23dr.bench [--profile full] [--device cuda] [--out FILE.json]`.

For each stage's point count and batch size (stage 1 and stage 2 of the profile) it
measures training samples/s of the full step (forward, Sinkhorn loss, backward, AdamW),
counts the model's FLOPs per sample with `torch.utils.flop_counter`, and relates the
achieved FLOP/s to the device's measured dense-matmul peak. Prints a table; `--out`
also writes the rows as JSON for the book's reproducibility chapter.
"""

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import rundir
from .config import ParamsError, load_params
from .data import SceneDataset, check_device, collate, to_device
from .inference import autocast, uses_bf16
from .world.sampling import sample_scene
from .world.synthetic import generate_scene
from .loop import build, compiled, train_step


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
    """Samples/s, FLOPs per sample and peak memory of training steps at these params."""
    model, criterion, optimizer = build({**params, "train": {**params["train"], "seed": 0}}, device)
    model.train()
    net, loss_fn = compiled(model, criterion, params["train"])  # as the trainer runs them
    batch_size = params["train"]["batch_size"]
    batch = synthetic_batch(params["data"]["points"], batch_size, device)

    def step():
        train_step(net, loss_fn, optimizer, batch, params, device)

    with FlopCounterMode(display=False) as counter:
        with autocast(params, device):
            out = model(batch)
        criterion(out, batch)["total"].backward()
    flops = counter.get_total_flops() / batch_size
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"samples_per_s": steps * batch_size / seconds, "train_gflop_per_sample": flops / 1e9,
            "achieved_tflops": flops * batch_size * steps / seconds / 1e12, "peak_memory_gib": peak / 2 ** 30}


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
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m s23dr.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 / 1)")
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
    if args.out:  # before the minutes of measuring
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        rundir.check_writable(args.out, "--out")
    device = check_device(args.device)
    cuda = device.type == "cuda"
    steps = args.steps or (20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    rows = []
    for stage in ("stage1", "stage2"):
        params = load_params(Path(__file__).resolve().parents[2] / "params" / f"{stage}.yaml",
                             args.profile, args.set)
        bf16 = uses_bf16(params, device)
        peak = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32, n=4096 if cuda else 2048)
        row = {"device": device_name(device), "profile": args.profile, "stage": stage,
               "points": params["data"]["points"], "batch_size": params["train"]["batch_size"],
               "precision": "bf16" if bf16 else "fp32", "compile": params["train"]["compile"],
               "compile_mode": params["train"]["compile_mode"],
               **measure(params, device, steps, warmup), "matmul_peak_tflops": peak / 1e12}
        row["fraction_of_peak"] = row["achieved_tflops"] / row["matmul_peak_tflops"]
        rows.append(row)
        print(f"{row['device']} | {stage} {row['points']} pts x {row['batch_size']} | {row['precision']}"
              f"{' compiled (' + row['compile_mode'] + ')' if row['compile'] else ''} | {row['samples_per_s']:.1f} samples/s | "
              f"{row['train_gflop_per_sample']:.2f} GFLOP/sample (fwd+bwd) | {row['achieved_tflops']:.3f} TFLOP/s = "
              f"{100 * row['fraction_of_peak']:.1f}% of {row['matmul_peak_tflops']:.2f} matmul peak | "
              f"peak memory {row['peak_memory_gib']:.2f} GiB", flush=True)
    if args.out:
        with rundir.atomic_write(args.out) as f:
            f.write(json.dumps(rows, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
