"""Write the synthetic datasets: every scene generated once and sampled at every point count S.

`build_dataset` writes out_dir/sampled_{S}, a `datasets` DatasetDict (train, validation) in
the schema of the real data (`schema.py`), for every S; each scene is a fused cloud of
`synthetic.generate_scene`, made in a process pool and sampled by `sampling.sample_sizes`
(the book, The synthetic dataset). `python -m s23dr.pipeline data` calls it with a
profile's sizes and world.

Command line: ``python -m s23dr.synthetic_data [--out DIR --train N --val N --seed N]
[--points 512 1024 2048 4096] [--world noise=0.5 roofs=[gable,hip] ...]``; what it does not
set is params/base.yaml's `data.synthetic` (the recipe's sizes, the easy world), read from
there, and `--world` changes that world key by key.
"""

import argparse
import multiprocessing
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from .memory import keep_freed_memory
from .world.sampling import sample_sizes, structural_coverage
from .schema import hf_features
from .world.synthetic import WORLD_KEYS, World, generate_scene, parse_world

#: The params file whose `data.synthetic` the command line defaults to. Read as YAML, not
#: through `config`: the datasets' stamp covers this module's imports, not the params code.
BASE_PARAMS = Path(__file__).resolve().parents[2] / "params" / "base.yaml"


def scene_rows(task):
    """(seed, split, index, points, world) -> {S: row}: one fused cloud sampled at every S."""
    seed, split, index, points, world = task
    return sample_sizes(generate_scene(seed, index, split, world), points, seed)


def generate_rows(tasks, workers=2, progress=False):
    """Yield scene_rows(task) for each task in order, computed in `workers` processes."""
    from tqdm.auto import tqdm

    with tqdm(total=len(tasks), disable=not progress, desc="synthetic scenes", unit="scene") as bar:
        if workers <= 1:
            for task in tasks:
                yield scene_rows(task)
                bar.update()
            return
        with multiprocessing.get_context("fork").Pool(workers, initializer=keep_freed_memory) as pool:
            for rows in pool.imap(scene_rows, tasks, chunksize=8):
                yield rows
                bar.update()
            pool.close()
            pool.join()


def build_dataset(out_dir, n_train, n_val, points=(2048, 4096), seed=0, workers=2, progress=False, world=None):
    """Write out_dir/sampled_{S} (a DatasetDict: train, validation) for every S; return {S: path}.

    Each scene's fused cloud is generated once (in `workers` processes) and sampled at all S.
    `world`: the difficulty (`World.of`: a World, a mapping of some of its keys, or None).
    """
    import datasets

    points = tuple(int(s) for s in points)
    if not points or min(points) <= 0:
        raise ValueError(f"points must be positive point counts, got {points!r}")
    if n_train < 0 or n_val < 0 or n_train + n_val == 0:
        raise ValueError(f"n_train and n_val must be non-negative and not both 0, got {n_train}, {n_val}")
    world = World.of(world)
    splits = {"train": n_train, "validation": n_val}
    tasks = [(seed, split, i, points, world) for split, n in splits.items() for i in range(n)]
    rows = {s: {split: [] for split in splits} for s in points}
    for (_, split, _, _, _), by_size in zip(tasks, generate_rows(tasks, workers, progress)):
        for s, row in by_size.items():
            rows[s][split].append(row)
    schema = hf_features().arrow_schema
    paths = {}
    for s in points:
        # An explicit fingerprint: `datasets` would otherwise hash the whole table by pickling it.
        dataset = datasets.DatasetDict({
            split: datasets.Dataset(_arrow_table(split_rows, schema),
                                    fingerprint=f"s23dr-synthetic-{seed}-{world.tag()}-{split}-{len(split_rows)}-{s}")
            for split, split_rows in rows[s].items()})
        paths[s] = Path(out_dir) / f"sampled_{s}"
        dataset.save_to_disk(str(paths[s]))
    return paths


def _arrow_table(rows, schema):
    """Rows as the arrow table `Dataset.from_dict(..., features=hf_features())` would build,
    made directly from the numpy arrays (about ten times faster)."""
    if not rows:
        return schema.empty_table()
    columns = []
    for field in schema:
        values = [row[field.name] for row in rows]
        storage = getattr(field.type, "storage_type", field.type)  # Array2D/3D: nested lists inside
        if not pa.types.is_list(storage):
            columns.append(pa.array(values, type=field.type))
            continue
        leaf = storage
        while pa.types.is_list(leaf):
            leaf = leaf.value_type
        nested = pa.array(np.concatenate([np.ravel(v) for v in values]), type=leaf)
        for size in reversed(np.shape(values[0])[1:]):  # fixed trailing axes, innermost first
            nested = pa.ListArray.from_arrays(pa.array(np.arange(0, len(nested) + 1, size, dtype=np.int32)), nested)
        offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int32)
        nested = pa.ListArray.from_arrays(pa.array(offsets), nested)
        columns.append(nested if storage is field.type else pa.ExtensionArray.from_storage(field.type, nested))
    return pa.Table.from_arrays(columns, schema=schema)


def main(argv=None):
    syn = yaml.safe_load(BASE_PARAMS.read_text())["data"]["synthetic"]
    parser = argparse.ArgumentParser(prog="python -m s23dr.synthetic_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(syn["root"]), help="output folder (default %(default)s, params/base.yaml)")
    parser.add_argument("--train", type=int, default=syn["train"], help="training scenes (default %(default)s, params/base.yaml)")
    parser.add_argument("--val", type=int, default=syn["val"], help="validation scenes (default %(default)s, params/base.yaml)")
    parser.add_argument("--points", type=int, nargs="+", default=[512, 1024, 2048, 4096],
                        help="sample sizes S (default: the `full` and `cpu` profiles' stage 1 and 2)")
    parser.add_argument("--seed", type=int, default=syn["seed"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--world", nargs="+", default=[], action="extend", metavar="KEY=VALUE",
                        help=f"difficulty, e.g. noise=0 roofs=[gable,hip] (keys: {', '.join(WORLD_KEYS)})")
    args = parser.parse_args(argv)
    for name, value, low in (("train", args.train, 1), ("val", args.val, 1), ("workers", args.workers, 1),
                             ("seed", args.seed, 0), ("points", min(args.points), 1)):
        if value < low:  # a training needs scenes of both splits (data.synthetic's limits in config)
            parser.error(f"--{name} should be an integer >= {low}, got {value}")
    try:
        given = parse_world(args.world)  # checks every pair
        keys = [pair.partition("=")[0].strip() for pair in args.world]
        world = World.of({**syn["world"], **{key: getattr(given, key) for key in keys}})
    except ValueError as err:
        parser.error(str(err))
    paths = build_dataset(args.out, args.train, args.val, args.points, args.seed, args.workers, progress=True,
                          world=world)
    import datasets

    for s, path in paths.items():
        validation = datasets.load_from_disk(str(path))["validation"].with_format("numpy")
        coverage = [structural_coverage(row) for row in validation] if len(validation) else [float("nan")]
        print(f"{path}: structural coverage (validation, 0.5 m) {np.mean(coverage):.1%}")


if __name__ == "__main__":
    main()
