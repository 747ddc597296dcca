"""How fast the synthetic data builds, how big it is on disk, and the coverage it keeps.

    .venv/bin/python benchmarks/synthetic_speed.py [--scenes 5000] [--write 500] [--coverage 256]
        [--world noise=0.5 roofs=[gable,hip] ...]

Prints: one-process milliseconds per scene (fused cloud; each sampling), the two-worker
throughput of fused cloud + 2048 and 4096 samplings (the budget: 5,000 scenes in at most
a minute on our 2-core machine), the time and bytes of writing with `datasets`, and, on
validation scenes, the mean structural coverage at 512/1024/2048/4096 points, the mean
number of GT edges and the generation time (fused cloud and the four samplings). A part
given 0 scenes is skipped. `--world` sets the difficulty (`s23dr.world.synthetic.World`; default:
full). The machine's load average is printed too: other work on the same cores slows
every figure, so the workers' CPU time is reported beside the wall time.
"""

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from s23dr import synthetic_data
from s23dr.world import sampling, synthetic


def one_process(n, world):
    synthetic_data.keep_freed_memory()
    start = time.process_time()
    scenes = [synthetic.generate_scene(0, i, "bench", world) for i in range(n)]
    generate = (time.process_time() - start) / n
    sample = {}
    for s in (2048, 4096):
        start = time.process_time()
        for scene in scenes:
            sampling.sample_scene(scene, s, 0)
        sample[s] = (time.process_time() - start) / n
    points = np.mean([len(scene["source"]) for scene in scenes])
    return generate, sample, points


def timed_rows(tasks, workers):
    """The rows of `tasks`, the wall seconds and the CPU seconds of the processes that made them."""
    def cpu_seconds():
        usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        return sum(u.ru_utime + u.ru_stime for u in usage)

    cpu, start = cpu_seconds(), time.perf_counter()
    rows = list(synthetic_data.generate_rows(tasks, workers=workers))
    return rows, time.perf_counter() - start, cpu_seconds() - cpu


def two_workers(n, world):
    """Wall seconds, and the CPU seconds (what two otherwise idle cores would need)."""
    tasks = [(0, "bench", i, (2048, 4096), world) for i in range(n)]
    _, wall, cpu = timed_rows(tasks, workers=2)
    return wall, cpu


def write(n, world):
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        paths = synthetic_data.build_dataset(folder, n, 0, points=(2048, 4096), seed=0, workers=2, world=world)
        seconds = time.perf_counter() - start
        size = {s: sum(f.stat().st_size for f in Path(p).rglob("*") if f.is_file()) for s, p in paths.items()}
    return seconds, size


def coverage(n, world, workers):
    """Mean structural coverage at each S, mean GT edges, and wall and CPU ms per scene
    (fused cloud and its four samplings) of n validation scenes."""
    sizes = (512, 1024, 2048, 4096)
    tasks = [(0, "validation", i, sizes, world) for i in range(n)]
    rows, wall, cpu = timed_rows(tasks, workers)
    means = {s: float(np.mean([sampling.structural_coverage(r[s]) for r in rows])) for s in sizes}
    edges = float(np.mean([len(r[sizes[0]]["gt_edges"]) for r in rows]))
    return means, edges, wall / n * 1e3, cpu / n * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=5000, help="scenes for the two-worker throughput")
    parser.add_argument("--single", type=int, default=100, help="scenes for the one-process timings")
    parser.add_argument("--write", type=int, default=500, help="scenes for the datasets write (0: skip)")
    parser.add_argument("--coverage", type=int, default=256, help="scenes for the coverage means (0: skip)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the coverage scenes")
    parser.add_argument("--world", nargs="+", default=[], action="extend", metavar="KEY=VALUE",
                        help=f"the difficulty (keys: {', '.join(synthetic.WORLD_KEYS)}); default full")
    args = parser.parse_args()
    try:
        world = synthetic.parse_world(args.world)
    except ValueError as err:
        parser.error(str(err))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"world: {world}")

    if args.single:
        generate, sample, points = one_process(args.single, world)
        print(f"one process: fused cloud {generate * 1e3:.1f} ms/scene ({points:.0f} points), "
              f"sampling 2048 {sample[2048] * 1e3:.2f} ms, 4096 {sample[4096] * 1e3:.2f} ms")

    if args.scenes:
        wall, cpu = two_workers(args.scenes, world)
        print(f"two workers: {args.scenes} scenes (cloud + 2048 + 4096) in {wall:.1f} s = "
              f"{args.scenes / wall:.1f} scenes/s -> 5,000 scenes in {5000 * wall / args.scenes:.1f} s (budget 60 s)")
        print(f"  CPU time {cpu:.1f} s -> on two idle cores 5,000 scenes in {5000 * cpu / 2 / args.scenes:.1f} s")

    if args.write:
        seconds, size = write(args.write, world)
        per_scene = {s: b / args.write for s, b in size.items()}
        print(f"build_dataset, {args.write} scenes, 2048 + 4096: {seconds:.1f} s "
              f"({args.write / seconds:.1f} scenes/s incl. generation)")
        for s, b in per_scene.items():
            print(f"  sampled_{s}: {b / 1e3:.1f} kB/scene on disk, {b * 5000 / 1e9:.2f} GB for 5,000 scenes")

    if args.coverage:
        means, edges, wall_ms, cpu_ms = coverage(args.coverage, world, args.workers)
        print(f"structural coverage (0.5 m, {args.coverage} validation scenes): "
              + ", ".join(f"{s}: {m:.1%}" for s, m in means.items()))
        print(f"  GT edges {edges:.2f} per scene; generation (cloud + 4 samplings, {args.workers} worker(s)) "
              f"{wall_ms:.1f} ms/scene wall, {cpu_ms:.1f} ms/scene CPU")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
