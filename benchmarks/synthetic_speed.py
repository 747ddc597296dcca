"""How fast the synthetic data builds, how big it is on disk, and the coverage it keeps.

    .venv/bin/python benchmarks/synthetic_speed.py [--scenes 5000] [--write 500] [--coverage 256]

Prints: one-process milliseconds per scene (fused cloud; each sampling), the two-worker
throughput of fused cloud + 2048 and 4096 samplings (the budget: 5,000 scenes in at most
a minute on our 2-core machine), the time and bytes of writing with `datasets`, and the
mean structural coverage at 512/1024/2048/4096 points. The machine's load average is
printed too: other work on the same cores slows every figure, so the workers' CPU time is
reported beside the wall time.
"""

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from s23dr import synthetic


def one_process(n):
    synthetic.keep_freed_memory()
    start = time.process_time()
    scenes = [synthetic.generate_scene(0, i, "bench") for i in range(n)]
    generate = (time.process_time() - start) / n
    sample = {}
    for s in (2048, 4096):
        start = time.process_time()
        for scene in scenes:
            synthetic.sample_scene(scene, s, 0)
        sample[s] = (time.process_time() - start) / n
    points = np.mean([len(scene["source"]) for scene in scenes])
    return generate, sample, points


def two_workers(n):
    """Wall seconds, and the workers' CPU seconds (what two otherwise idle cores would need)."""
    tasks = [(0, "bench", i, (2048, 4096)) for i in range(n)]
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for _ in synthetic.generate_rows(tasks, workers=2):
        pass
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)


def write(n):
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        paths = synthetic.build_dataset(folder, n, 0, points=(2048, 4096), seed=0, workers=2)
        seconds = time.perf_counter() - start
        size = {s: sum(f.stat().st_size for f in Path(p).rglob("*") if f.is_file()) for s, p in paths.items()}
    return seconds, size


def coverage(n):
    out = {s: [] for s in (512, 1024, 2048, 4096)}
    tasks = [(0, "validation", i, tuple(out)) for i in range(n)]
    for rows in synthetic.generate_rows(tasks, workers=2):
        for s, row in rows.items():
            out[s].append(synthetic.structural_coverage(row))
    return {s: float(np.mean(v)) for s, v in out.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=5000, help="scenes for the two-worker throughput")
    parser.add_argument("--single", type=int, default=100, help="scenes for the one-process timings")
    parser.add_argument("--write", type=int, default=500, help="scenes for the datasets write (0: skip)")
    parser.add_argument("--coverage", type=int, default=256, help="scenes for the coverage means (0: skip)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    generate, sample, points = one_process(args.single)
    print(f"one process: fused cloud {generate * 1e3:.1f} ms/scene ({points:.0f} points), "
          f"sampling 2048 {sample[2048] * 1e3:.2f} ms, 4096 {sample[4096] * 1e3:.2f} ms")

    wall, cpu = two_workers(args.scenes)
    print(f"two workers: {args.scenes} scenes (cloud + 2048 + 4096) in {wall:.1f} s = {args.scenes / wall:.1f} scenes/s"
          f" -> 5,000 scenes in {5000 * wall / args.scenes:.1f} s (budget 60 s)")
    print(f"  workers' CPU time {cpu:.1f} s -> on two idle cores 5,000 scenes in {5000 * cpu / 2 / args.scenes:.1f} s")

    if args.write:
        seconds, size = write(args.write)
        per_scene = {s: b / args.write for s, b in size.items()}
        print(f"build_dataset, {args.write} scenes, 2048 + 4096: {seconds:.1f} s "
              f"({args.write / seconds:.1f} scenes/s incl. generation)")
        for s, b in per_scene.items():
            print(f"  sampled_{s}: {b / 1e3:.1f} kB/scene on disk, {b * 5000 / 1e9:.2f} GB for 5,000 scenes")

    if args.coverage:
        means = coverage(args.coverage)
        print(f"structural coverage (0.5 m, {args.coverage} validation scenes): "
              + ", ".join(f"{s}: {m:.1%}" for s, m in means.items()))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
