"""One prepared GPU check: the CUDA tests, `s23dr.bench` compiled and eager with the step's
time split, and a short stage-1 run through the trainer, written to one JSON.

On the device machine (torch 2.11, Python 3.12, no package index), from the repository
root, in under 8 minutes:

    python3 -m pip install --no-index --no-deps .whl/*.whl && PYTHONPATH=lib python3 benchmarks/gpu_check.py

`.whl/` holds the wheels of the dependencies (pyproject.toml, less torch) that the machine
lacks, fetched beforehand where there is an index: `pip download --only-binary :all:
--python-version 3.12 --platform manylinux2014_x86_64 -d .whl PACKAGE...`. PYTHONPATH=lib
stands for the package's own install, which would need setuptools from an index.

(`make gpu-check` runs the second part.) The parts, each timed and recorded even when
one fails:

- the CUDA tests (`pytest tests/test_cuda.py`);
- `s23dr.bench` at `full` for stages 1 and 2, compiled (the profile's `train.compile_mode`)
  and eager: its rows (samples/s of the step alone and of the trainer's whole step, ...) and
  the step's time split: data (the trainer's step less the step alone, from bench's rows),
  forward with the loss, backward and AdamW, each timed to its end on one batch;
- stage 1 through the trainer for `--steps` steps (its loader, the compiled step, an
  evaluation and a checkpoint, loaded back).

It writes `benchmarks/results/gpu_check.json`, which the book's throughput table reads
(`analysis.reproducibility.throughput`), and prints a one-screen summary. Its data is a
synthetic dataset in the real data's schema, in a temporary folder.

`--device cpu --steps 3` is a dry run of every part in well under a minute: the smoke
profile, eager only, a few scenes; it writes only to an `--out` given (the test suite runs it).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from s23dr import bench, checkpoint
from s23dr.config import load_params
from s23dr.data import check_device
from s23dr.experiments import point_stages
from s23dr.loop import build, forward_loss, train
from s23dr.rundir import MetricsLog, check_writable
from s23dr.synthetic_data import build_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks/results/gpu_check.json"
PHASES = ("forward_s", "backward_s", "optimizer_s")


def cuda_tests(timeout):
    """The CUDA tests' outcome: pytest's exit code and its summary line."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider",
                           "tests/test_cuda.py"], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.strip()] or ["(no output)"]
    return {"returncode": done.returncode, "summary": lines[-1], "seconds": time.perf_counter() - start}


def step_split(params, device, steps, warmup):
    """Median seconds of a training step's phases on one batch on the device, as
    `loop.train_step` runs them: forward with the loss, backward, AdamW."""
    model, criterion, optimizer = build({**params, "train": {**params["train"], "seed": 0}}, device)
    model.train()
    forward = forward_loss(model, criterion, params, device)
    batch = bench.synthetic_batch(params["data"]["points"], params["train"]["batch_size"], device)
    times = []
    for i in range(warmup + steps):
        marks = [time.perf_counter()]
        losses = forward(batch)
        bench.sync(device)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        bench.sync(device)
        marks.append(time.perf_counter())
        optimizer.step()
        bench.sync(device)
        marks.append(time.perf_counter())
        if i >= warmup:
            times.append(np.diff(marks))
    return dict(zip(PHASES, map(float, np.median(times, axis=0))))


def bench_variant(variant, profile, device, data, steps, folder):
    """bench's rows of stages 1 and 2 with `train.compile` on or off, each with its step's time split."""
    out = Path(folder) / f"bench_{variant}.json"
    compiled = f"train.compile={str(variant == 'compiled').lower()}"
    code = bench.main(["--profile", profile, "--device", str(device), "--data", data, "--steps", str(steps),
                       "--warmup", str(max(1, steps // 5)), "--set", compiled, "--out", str(out)])
    if code:
        raise RuntimeError(f"s23dr.bench exited with {code}")
    rows = json.loads(out.read_text())
    for row in rows:
        params = load_params(ROOT / f"params/{row['stage']}.yaml", profile, [compiled])
        trainer_step, step_alone = row["batch_size"] / row["trainer_samples_per_s"], row["batch_size"] / row["samples_per_s"]
        row.update(variant=variant, data_s=max(0.0, trainer_step - step_alone),
                   **step_split(params, device, steps, max(1, steps // 5)))
    return rows


def trainer_run(profile, device, data, steps, scenes, folder):
    """Stage 1 through `loop.train` for `steps` steps, evaluated and checkpointed at its last."""
    params = load_params(ROOT / "params/stage1.yaml", profile, [
        f"data.train={data}:train", f"data.val={data}:validation", f"schedule.end_step={steps}",
        f"train.eval_every={steps}", f"train.ckpt_every={steps}", "train.log_every=1", f"eval.max_scenes={scenes}"])
    start = time.perf_counter()
    final = train(params, Path(folder) / "run", device=str(device), progress=False)
    seconds = time.perf_counter() - start
    rows = MetricsLog.read(Path(folder) / "run" / MetricsLog.FILE)
    losses = [r["total"] for r in MetricsLog.trains(rows)]
    return {"steps": steps, "seconds": seconds, "compile": params["train"]["compile"],
            "loss_first_last": [losses[0], losses[-1]], "evaluation": MetricsLog.evals(rows)[-1],
            "checkpoint": final.name,
            "checkpoint_step": checkpoint.load(final)["step"]}


def attempt(record, part, fn, save):
    """Run one part into `record[part]` and `save` the record (a check killed at its time limit
    keeps the parts done); a failure is recorded in one line and the check goes on."""
    start = time.perf_counter()
    try:
        record[part] = fn()
    except Exception as err:  # every part is reported, whatever broke one
        record[part] = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
    print(f"{part}: {time.perf_counter() - start:.0f} s", flush=True)
    save()


def summary(record):
    """The result on one screen."""
    lines = [f"GPU check on {record['device']} (torch {record['torch']}, Python {record['python']}), "
             f"profile {record['profile']}, {record['steps']} steps, {record['seconds']:.0f} s"]
    tests = record["cuda_tests"]
    lines.append(f"CUDA tests: {tests.get('error') or tests['summary']}")
    lines.append(f"{'stage':8}{'variant':10}{'step alone/s':>13}{'trainer/s':>11}{'data ms':>9}{'fwd ms':>8}"
                 f"{'bwd ms':>8}{'adamw ms':>9}")
    for variant in record["variants"]:
        rows = record[f"bench_{variant}"]
        if isinstance(rows, dict):
            lines.append(f"{'':8}{variant:10}error: {rows['error']}")
            continue
        for r in rows:
            lines.append(f"{r['stage']:8}{variant:10}{r['samples_per_s']:13.1f}{r['trainer_samples_per_s']:11.1f}"
                         + "".join(f"{1e3 * r[k]:{w}.1f}" for k, w in (("data_s", 9), *zip(PHASES, (8, 8, 9)))))
    run = record["trainer"]
    lines.append("trainer: " + (f"error: {run['error']}" if "error" in run else
                                f"stage1 {run['steps']} steps in {run['seconds']:.0f} s "
                                f"({'compiled' if run['compile'] else 'eager'}), loss {run['loss_first_last'][0]:.3f} -> "
                                f"{run['loss_first_last'][1]:.3f}, evaluated (HSS {run['evaluation']['hss']:.3f}), "
                                f"{run['checkpoint']} loads at step {run['checkpoint_step']}"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=None, help="timed steps a measurement, and the trainer's steps "
                        "(default 30 on CUDA, 3 on the CPU)")
    parser.add_argument("--out", default=None, help=f"the JSON to write (default on CUDA: {RESULT.relative_to(ROOT)}; "
                        "on the CPU, a dry run, none)")
    args = parser.parse_args(argv)
    try:
        device = check_device(args.device)
        if args.steps is not None and args.steps < 1:
            raise ValueError(f"--steps should be an integer >= 1, got {args.steps}")
        out = args.out or (RESULT if device.type == "cuda" else None)
        if out:
            check_writable(out, "--out")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cuda = device.type == "cuda"
    steps, profile = args.steps or (30 if cuda else 3), "full" if cuda else "smoke"
    stages = point_stages(profile, ROOT / "params")
    scenes = max(64 if cuda else 4, *(p["train"]["batch_size"] for p in stages.values()))  # a split holds a batch
    variants = ("compiled", "eager") if cuda else ("eager",)  # compiling on a CPU takes minutes
    record = {"device": bench.device_name(device), "torch": torch.__version__, "python": platform.python_version(),
              "profile": profile, "steps": steps, "variants": list(variants)}
    command = sys.argv if argv is None else ["benchmarks/gpu_check.py", *argv]

    def save():
        if out:
            bench.save_result(out, record, command, stages["stage1"])

    start = time.perf_counter()
    attempt(record, "cuda_tests", lambda: cuda_tests(timeout=240), save)
    with tempfile.TemporaryDirectory(prefix="s23dr-gpu-check-") as folder:
        points = sorted({p["data"]["points"] for p in stages.values()})
        build_dataset(folder, scenes, scenes, points, workers=min(8, os.cpu_count() or 1))
        data = f"{folder}/sampled_{{points}}"
        for variant in variants:
            attempt(record, f"bench_{variant}", lambda: bench_variant(variant, profile, device, data, steps, folder), save)
        attempt(record, "trainer", lambda: trainer_run(profile, device, data, steps, scenes, folder), save)
    record["seconds"] = time.perf_counter() - start
    save()
    print(summary(record))
    if out:
        print(f"wrote {out}")
    return 0 if all("error" not in record[p] for p in ("cuda_tests", *(f"bench_{v}" for v in variants), "trainer")) \
        and record["cuda_tests"]["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
