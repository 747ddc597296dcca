"""The data layer: a dataset URI in, validated scenes and fixed-size training batches out.

The path of a scene, top to bottom:

1. `open_dataset(uri)` finds the rows of one split (hub, `save_to_disk` folder, parquet
   or per-scene `.npz` files) and returns `Scenes`, a lazy sequence.
2. `Scenes[i]` reads one raw row, converts it with `to_scene` to exactly the dtypes and
   shapes of `schema.py`, and checks it with `validate_scene`, so an invalid scene is
   never trained on silently: reading it raises. `check_scenes` reads every scene up
   front, so that the trainer fails (or drops the invalid ones) before its first step;
   the scenes it returns are not checked again at each read (a loader worker's item).
   Opened with `gt=False` (prediction), scenes leave out the GT fields, read or not.
3. `SceneDataset[i]` (or `[(epoch, i)]`) fits the points to a fixed count, pads the GT
   segments to `MAX_GT_EDGES` and applies the seeded augmentation; `collate` stacks items
   into the batch contract (torch tensors); `to_device` moves a batch.

URI forms (a trailing `:name` without slashes picks the split; default `train`):

- `hf://owner/name:split` -- the Hugging Face hub via `datasets.load_dataset`.
- `DIR[:split]` -- a folder written by `datasets`' `save_to_disk`: a DatasetDict (pick a
  split) or a single Dataset (no split).
- `DIR[:split]` -- parquet files, `DIR/<split>/*.parquet` or `DIR/<split>[-*].parquet`
  (the hub's naming: `train-00000-of-00004.parquet`); the split is the subfolder name or
  the file name up to its first `-`. Read with `datasets`' parquet builder, which converts
  them once into its cache (memory-mapped afterwards).
- `DIR[:split]` -- per-scene `.npz` files holding the schema's field names: `DIR/*.npz`
  (no split) or, when `DIR` holds none itself, `DIR/<split>/*.npz`. The order_id is the
  stored `order_id` or else the file stem.

Every data file is read once when the dataset is opened (arrow and parquet by `datasets`,
every array of every `.npz`), so a truncated or corrupt file fails there, named.
"""

import json
import logging
import os
import socket
import urllib.parse
import zipfile
import zlib
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from .schema import (ARRAY_FIELDS, GT_FIELDS, MAX_GT_EDGES, NUM_SOURCES, POINT_CLASSES, POINT_FIELDS,
                     SOURCE_DEPTH, SOURCE_SPARSE)

log = logging.getLogger(__name__)

#: What to do without the hub (there is no network on our machines).
HUB_PROBE_TIMEOUT = 5  # seconds for the one connection that tells whether the hub is reachable
OFFLINE_HINT = ("Without network, use the synthetic default: build it with `make data` "
                "(python -m s23dr.pipeline data --profile cpu) and train with --profile cpu, "
                "or pass its path, e.g. data/synthetic/sampled_1024:train.")

#: Fields of `validate_scene`'s finiteness check: every float field (a NaN anywhere becomes a NaN loss).
FINITE_FIELDS = tuple(name for name, (dtype, _) in ARRAY_FIELDS.items() if np.dtype(dtype).kind == "f")

#: The largest magnitude those fields may hold: far beyond any scene (metres or normalised
#: units), far below where the model's float32 squares and sums overflow to inf.
MAX_MAGNITUDE = 1e6

#: The batch contract: field -> torch dtype (plus `order_id`, a list of str, and `padded`, a
#: bool: whether any item has padding points, which `Perceiver` reads to drop the key mask).
#: `aug` [B,3,3] is the augmentation of each item: augmented = original @ aug.T.
#: The point fields the model reads, in their stored widths (the embeddings' indices too:
#: `features.embed` takes uint8): 22 bytes a point to copy to the device instead of 61 in
#: int64 and float32, and no widening in `collate`.
#: visible_src and visible_id, which no model or loss reads, stay out.
BATCH_DTYPES = {
    "xyz_norm": torch.float32, "class_id": torch.uint8, "source": torch.uint8,
    "behind": torch.int16, "n_views_voted": torch.uint8, "vote_frac": torch.float32, "mask": torch.bool,
    "gt_segments": torch.float32, "gt_mask": torch.bool,
    "center": torch.float32, "scale": torch.float32, "aug": torch.float32,
}


# ---------------------------------------------------------------------------------------
# One row -> one scene


def to_scene(row, where, gt=True):
    """A raw row as a scene dict with exactly the schema's dtypes and shapes, plus `order_id`.

    `row` maps field names to lists, nested or flat arrays, or arrays of other int widths
    (as `datasets` and `np.load` return them); extra fields are dropped, and with
    `gt=False` the GT fields too. `where` (file or URI and row) goes into every error message.
    """
    if "order_id" not in row:
        raise ValueError(f"{where}: missing field 'order_id'")
    order_id = np.asarray(row["order_id"])
    if order_id.size != 1:
        raise ValueError(f"{where}: field 'order_id' should be one string, found shape {order_id.shape}")
    scene = {"order_id": str(order_id.reshape(()).item())}
    n_points = None  # S, set by the first point field; every other point field must agree
    for name, (dtype, shape) in ARRAY_FIELDS.items():
        if name in GT_FIELDS and not gt:
            continue
        if name in POINT_FIELDS:
            shape = (n_points, *shape)
        scene[name] = _field(row, name, dtype, shape, where)
        if name in POINT_FIELDS:
            n_points = len(scene[name])
    return scene


def _field(row, name, dtype, shape, where):
    """Field `name` of `row` as an array of `dtype` and `shape` (None: any length)."""
    if name not in row:
        needed = " (ground truth: training and evaluation need it, predict does not)" if name in GT_FIELDS else ""
        raise ValueError(f"{where}: missing field {name!r}{needed}")
    try:
        a = np.asarray(row[name])
        if a.dtype == object:  # `datasets` returns ragged nesting as an array of arrays
            a = np.asarray(a.tolist())
    except ValueError as err:
        raise ValueError(f"{where}: field {name!r} is not a regular array ({err})") from None
    if not _fits(a.shape, shape) and a.ndim <= 1:  # flat values: restore the trailing axes
        with suppress(ValueError):
            a = a.reshape(tuple(-1 if d is None else d for d in shape))
    if not _fits(a.shape, shape):
        expected = str(tuple("?" if d is None else d for d in shape)).replace("'", "")
        raise ValueError(f"{where}: field {name!r} should have shape {expected}, found {a.shape}")
    return _cast(a, np.dtype(dtype), f"{where}: field {name!r}")


def _fits(found, shape):
    return len(found) == len(shape) and all(d is None or d == f for f, d in zip(found, shape))


def _cast(a, dtype, what):
    """`a` as `dtype`, refusing conversions that would lose values (floats to ints, int overflow)."""
    if a.dtype == dtype:
        return a
    if dtype.kind in "iub" and a.dtype.kind not in "iub":
        raise ValueError(f"{what} should hold integers ({dtype}), found {a.dtype}")
    if dtype.kind in "iu" and a.size:
        info = np.iinfo(dtype)
        if a.min() < info.min or a.max() > info.max:
            raise ValueError(f"{what}: values {a.min()}..{a.max()} do not fit {dtype}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{what} should be numeric ({dtype}), found {a.dtype}")
    return a.astype(dtype)


def validate_scene(scene):
    """Raise ValueError naming the order_id and the problem if `scene` cannot be trained on.

    Checks what would otherwise fail late or silently: finite floats within MAX_MAGNITUDE, a positive scale, at
    least one valid point, class/source ids the model's embeddings can index and, in a
    scene with GT, the GT edge count (1..MAX_GT_EDGES), matching GT lengths and edge indices.
    """
    problem = _problem(scene)
    if problem:
        raise ValueError(f"scene {scene['order_id']!r}: {problem}")


def _problem(scene):
    for name in FINITE_FIELDS:
        if name in scene and not np.isfinite(scene[name]).all():
            return f"non-finite values (NaN or inf) in {name}"
        if name in scene and np.size(scene[name]) and np.abs(scene[name]).max() > MAX_MAGNITUDE:
            return f"values beyond ±{MAX_MAGNITUDE:g} in {name} (up to {np.abs(scene[name]).max():g})"
    if scene["scale"] <= 0:
        return f"scale must be positive, found {scene['scale']}"
    if not scene["mask"].any():
        return "no valid points (mask is all False)"
    if scene["class_id"].max() >= len(POINT_CLASSES):
        return f"class_id {scene['class_id'].max()} out of range for {len(POINT_CLASSES)} classes"
    if scene["source"].max() >= NUM_SOURCES:
        return (f"source {scene['source'].max()} is neither {SOURCE_SPARSE} (sparse) "
                f"nor {SOURCE_DEPTH} (depth)")
    return _gt_problem(scene) if "gt_edges" in scene else None


def _gt_problem(scene):
    n_edges, n_vertices = len(scene["gt_edges"]), len(scene["gt_vertices"])
    if n_edges == 0:
        return "no GT edges"
    if n_edges > MAX_GT_EDGES:
        return f"{n_edges} GT edges, more than MAX_GT_EDGES={MAX_GT_EDGES}"
    for name in ("gt_segments", "gt_edge_classes"):
        if len(scene[name]) != n_edges:
            return f"{name} has {len(scene[name])} entries but gt_edges has {n_edges}"
    edges = scene["gt_edges"]
    if edges.min() < 0 or edges.max() >= n_vertices:
        return f"gt_edges indices {edges.min()}..{edges.max()} out of range for {n_vertices} gt_vertices"
    return None


def read_bad_samples(path):
    """The set of order_ids in a bad-sample list: one a line, blank lines ignored.

    The baseline's file lacks a final newline (156 ids, `wc -l` says 155); both forms count right.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bad-sample list {path} does not exist")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


# ---------------------------------------------------------------------------------------
# Row sources: len, [i] -> raw row dict, where(i), order_ids


class _ArrowRows:
    """Rows of a `datasets.Dataset`, read straight from its arrow table.

    Each column the schema reads is unwrapped once per process into flat numpy values and
    per-row offsets (zero-copy views of the memory-mapped table where arrow allows), so a
    row is a few numpy slices: 0.03 ms for a 2,048-point row where slicing the table per row
    took 0.84, which a loader worker paid for every item. It keeps the stored int widths. The Dataset itself
    pickles cheaply (memory-mapped) and the unwrapped columns stay out of the pickle, so
    loader workers do not copy the data.
    """

    def __init__(self, dataset, uri):
        if "order_id" not in dataset.column_names:
            raise ValueError(f"{uri}: missing field 'order_id' (columns: {', '.join(dataset.column_names)})")
        self.dataset, self.uri = dataset.with_format("arrow"), uri
        self.order_ids = [str(order_id) for order_id in self.dataset["order_id"].to_pylist()]
        self._columns = self._table_rows = None

    def __getstate__(self):
        return {**self.__dict__, "_columns": None}

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        if self._columns is None:
            table, indices = self.dataset.data.table, self.dataset._indices  # _indices: a select()ed view
            self._table_rows = None if indices is None else indices.column(0).to_numpy()
            self._columns = {name: _Column(table.column(name)) for name in ARRAY_FIELDS if name in table.column_names}
        row = i if self._table_rows is None else int(self._table_rows[i])
        cells = {name: column[row] for name, column in self._columns.items()}
        return {"order_id": self.order_ids[i], **{name: cell for name, cell in cells.items() if cell is not None}}

    def where(self, i):
        return f"{self.uri} row {i} (order_id {self.order_ids[i]})"


class _Column:
    """One arrow column as flat numpy values: `column[row]` is that row's cell as a flat array
    (any nesting of lists flattened; a scalar as one value), or None for a null cell, which
    counts as a missing field."""

    def __init__(self, chunked):
        self.chunks = [_flat(chunk) for chunk in chunked.chunks]
        self.starts = np.cumsum([0] + [len(chunk) for chunk in chunked.chunks])

    def __getitem__(self, row):
        c = int(np.searchsorted(self.starts, row, side="right")) - 1
        values, offsets, nulls = self.chunks[c]
        j = row - self.starts[c]
        if nulls is not None and nulls[j]:
            return None
        return values[j:j + 1] if offsets is None else values[offsets[j]:offsets[j + 1]]


def _flat(array):
    """(values, row offsets into them or None for one value a row, null mask or None) of one
    arrow chunk; datasets' Array2D/3D columns are read through their storage."""
    nulls = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
    offsets, nested = np.arange(len(array) + 1), False  # where each row starts, in the current level
    while True:
        if isinstance(array, pa.ExtensionArray):
            array = array.storage
        elif pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            offsets, array, nested = array.offsets.to_numpy()[offsets], array.values, True
        elif pa.types.is_fixed_size_list(array.type):  # .values ignores the array's own slice offset
            offsets, array, nested = (offsets + array.offset) * array.type.list_size, array.values, True
        else:
            return array.to_numpy(zero_copy_only=False), offsets if nested else None, nulls


class _NpzRows:
    """Per-scene `.npz` files (the baseline's cache layout), each read in full when opened."""

    def __init__(self, paths):
        self.paths = paths
        self.order_ids = []
        for path in paths:
            arrays = _read_npz(path)
            self.order_ids.append(str(arrays["order_id"]) if "order_id" in arrays else path.stem)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return {**_read_npz(self.paths[i]), "order_id": self.order_ids[i]}

    def where(self, i):
        return str(self.paths[i])


def _read_npz(path):
    """Every array of an `.npz` file: reading them all checks every member's CRC, so a
    truncated or bit-flipped file fails here, named, and not at some step of a training run."""
    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle and suggest allow_pickle
        raise ValueError(f"{path}: not an .npz file (no zip archive: truncated, or another format)")
    try:
        with np.load(path) as f:
            return {name: f[name] for name in f.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise ValueError(f"{path}: corrupt .npz file ({type(err).__name__}: {err})") from None


# ---------------------------------------------------------------------------------------
# The scenes of one split


class Scenes(Sequence):
    """The scenes of one split, read lazily: `scenes[i]` is a converted, validated scene dict
    (without the GT fields when `gt` is False).

    `order_ids` lists the scenes in order; `skipped` maps each removed order_id to why
    (a bad-sample list, or a failed check in `check_scenes(drop=True)`). `checked`: every
    scene has passed `validate_scene` (`check_scenes`), so a read does not validate again.
    """

    def __init__(self, uri, rows, keep=None, skipped=None, gt=True, checked=False):
        self.uri, self._rows, self.gt, self.checked = uri, rows, gt, checked
        self._keep = list(range(len(rows))) if keep is None else keep
        self.skipped = dict(skipped or {})
        self.order_ids = [rows.order_ids[i] for i in self._keep]

    def __len__(self):
        return len(self._keep)

    def __getitem__(self, i):
        return self._read(i, validate=not self.checked)

    def _read(self, i, validate):
        row = self._keep[i]
        scene = to_scene(self._rows[row], self._rows.where(row), self.gt)
        if validate:
            validate_scene(scene)
        return scene

    def __repr__(self):
        return f"Scenes({self.uri!r}: {len(self)} scenes, {len(self.skipped)} skipped)"

    def check_all(self, progress=True, n_points=None):
        """Read and check every scene once: {order_id: reason} for the invalid ones, and with
        `n_points` those with more valid points than that (`check_points`)."""
        problems = {}
        for i in tqdm(range(len(self)), desc=f"checking {self.uri}", leave=False, disable=not progress):
            try:
                scene = self._read(i, validate=True)
                if n_points is not None:
                    check_points(scene, n_points)
            except ValueError as err:
                problems[self.order_ids[i]] = str(err)
        return problems

    def without(self, reasons, checked=False):
        """These scenes less those whose order_id is a key of `reasons` {order_id: why};
        `checked`: the rest are known valid (`check_scenes`)."""
        keep = [row for row, order_id in zip(self._keep, self.order_ids) if order_id not in reasons]
        removed = {order_id: reasons[order_id] for order_id in self.order_ids if order_id in reasons}
        scenes = Scenes(self.uri, self._rows, keep, {**self.skipped, **removed}, self.gt, checked or self.checked)
        if len(scenes) == 0:
            raise ValueError(f"{self.uri}: no scenes left after removing {len(scenes.skipped)} "
                             f"(e.g. {next(iter(scenes.skipped.values()))})")
        return scenes


def open_dataset(uri, bad_samples=None, gt=True):
    """The scenes of a dataset URI (see the module docstring for the forms).

    bad_samples: a bad-sample list file, or a collection of order_ids, to leave out.
    gt: False reads the scenes without their GT fields (prediction), so that unlabeled
    scenes, or ones with broken GT, can be read. An invalid scene raises when it is read;
    `check_scenes` checks them all at once.
    """
    uri = str(uri)
    location, split = split_uri(uri)
    rows = _open_rows(location, split, uri)
    if len(rows) == 0:
        raise ValueError(f"{uri}: the dataset holds no scenes")
    to_scene(rows[0], rows.where(0), gt)  # a wrong schema fails here, not later in a loader worker
    scenes = Scenes(uri, rows, gt=gt)
    first = {}
    for i, order_id in enumerate(rows.order_ids):  # scenes are keyed by order_id: a submission, a bad-sample list
        if order_id in first:
            raise ValueError(f"{uri}: order_id {order_id!r} names more than one scene "
                             f"({rows.where(first[order_id])} and {rows.where(i)})")
        first[order_id] = i
    if bad_samples is not None:
        is_file = isinstance(bad_samples, (str, os.PathLike))
        listed = read_bad_samples(bad_samples) if is_file else set(bad_samples)
        scenes = scenes.without({order_id: "listed as a bad sample" for order_id in listed})
        log.info("%s: removed %d of %d listed bad samples, %d scenes left",
                 uri, len(scenes.skipped), len(listed), len(scenes))
    return scenes


def check_scenes(scenes, drop=False, hint="", progress=True, n_points=None):
    """`scenes` once every one has been read and checked, so that an invalid scene stops a
    run before its first step, naming itself, not part-way through (in a loader worker);
    the scenes returned are marked `checked`, so their reads do not validate again.
    n_points: also refuse scenes with more valid points than a batch holds (params data.points).

    drop: leave the invalid scenes out (recorded in `.skipped`) and log how many and which,
    instead of raising. hint: appended to the error (what the caller's user can do).
    """
    problems = scenes.check_all(progress, n_points)
    if not problems:
        return scenes.without({}, checked=True)
    first = list(problems)[:5]
    which = ", ".join(first) + (", ..." if len(problems) > len(first) else "")
    if not drop:
        raise ValueError(f"{next(iter(problems.values()))} ({len(problems)} of {len(scenes)} scenes in "
                         f"{scenes.uri} are invalid: {which}){hint}")
    log.warning("%s: left out %d invalid scenes (%s); the first: %s",
                scenes.uri, len(problems), which, next(iter(problems.values())))
    return scenes.without(problems, checked=True)


def data_uri(params, split):
    """params data.train or data.val with its {points} and {synthetic_root} filled in."""
    data = params["data"]
    return data[split].format(points=data["points"], synthetic_root=data["synthetic"]["root"])


def trains_on_synthetic(params):
    """Whether the params' training data is their synthetic dataset (under data.synthetic.root)."""
    return Path(data_uri(params, "train")).is_relative_to(params["data"]["synthetic"]["root"])


def open_split(params, split, progress=True):
    """The scenes of `split` (train or val), every one checked before training starts, so a
    bad scene fails now and named, not part-way through the run (`check_scenes`).
    `data.drop_invalid` leaves the invalid ones out instead; `data.bad_samples` applies
    to training only. With `data.in_memory` the scenes are read into a list once."""
    data = params["data"]
    bad_samples = data["bad_samples"] if split == "train" else None
    hint = "; set data.drop_invalid=true to leave invalid scenes out"
    if split == "train":
        hint += ", or list them in data.bad_samples"
    scenes = check_scenes(open_dataset(data_uri(params, split), bad_samples=bad_samples),
                          drop=data["drop_invalid"], hint=hint, progress=progress, n_points=data["points"])
    return [scenes[i] for i in range(len(scenes))] if data["in_memory"] else scenes


def split_uri(uri):
    """(location, split or None): only a trailing `:name` without slashes is a split, and
    not when the whole string names an existing path."""
    location, colon, split = uri.rpartition(":")
    if not colon or not location or not split or "/" in split or "\\" in split or Path(uri).exists():
        return uri, None
    return location, split


def _open_rows(location, split, uri):
    if location.startswith("hf://"):
        return _ArrowRows(_load_hub(location.removeprefix("hf://"), split or "train", uri), uri)
    path = Path(location)
    if not path.exists():
        raise FileNotFoundError(f"{uri}: {path} does not exist. {OFFLINE_HINT}")
    if (path / "dataset_dict.json").exists():  # read the one split: another's problem is not this one's
        try:
            names = json.loads((path / "dataset_dict.json").read_text())["splits"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{uri}: {path / 'dataset_dict.json'} is corrupt ({type(err).__name__}: {err})") from None
        return _ArrowRows(_load_saved(path / _pick_split({n: n for n in names}, split, uri), uri), uri)
    if (path / "state.json").exists():
        return _ArrowRows(_load_saved(_pick_split({None: path}, split, uri), uri), uri)
    parquet = {}
    for file in sorted(path.glob("*.parquet")) + sorted(path.glob("*/*.parquet")):
        name = file.parent.name if file.parent != path else file.stem.split("-")[0]
        parquet.setdefault(name, []).append(str(file))
    if parquet:
        files = _pick_split(parquet, split, uri)
        dataset = _load_files(lambda: datasets.load_dataset("parquet", data_files=files, split="train"), files, uri)
        return _ArrowRows(dataset, uri)
    npz = {None: sorted(path.glob("*.npz"))}
    if not npz[None]:
        npz = {d.name: sorted(d.glob("*.npz")) for d in sorted(path.iterdir())
               if d.is_dir() and any(d.glob("*.npz"))}
    if npz:
        return _NpzRows(_pick_split(npz, split, uri))
    raise ValueError(f"{uri}: {path} holds no dataset (expected a `save_to_disk` folder, "
                     f"parquet files or .npz files)")


def _load_saved(folder, uri):
    """The Dataset of one `save_to_disk` folder. An empty one is named here: `datasets`
    fails on its zero shards with a bare IndexError."""
    files = sorted(folder.glob("*.arrow"))
    if not files:
        raise ValueError(f"{uri}: {folder} holds no scenes (an empty split: no .arrow files)")
    return _load_files(lambda: datasets.load_from_disk(str(folder)), files, uri)


def _load_files(load, files, uri):
    """`load()`, with a failure to read named: the first of `files` that pyarrow cannot read
    and why, where pyarrow and `datasets` name no file."""
    try:
        return load()
    except (OSError, ValueError, pa.ArrowException, datasets.exceptions.DatasetsError) as err:
        for file in files:
            try:
                _read_table(file)
            except (OSError, pa.ArrowException) as bad:
                raise ValueError(f"{uri}: {file} is truncated or corrupt ({type(bad).__name__}: {bad})") from None
        raise ValueError(f"{uri}: cannot read the dataset ({type(err).__name__}: {err})") from None


def _read_table(file):
    """Read an `.arrow` (IPC stream, as `save_to_disk` writes it) or `.parquet` file in full."""
    if str(file).endswith(".parquet"):
        return pq.read_table(file)
    with pa.memory_map(str(file)) as source:
        return pa.ipc.open_stream(source).read_all()


def _load_hub(repo, split, uri):
    if not datasets.config.HF_HUB_OFFLINE:  # offline, `datasets` reads its cache and asks no one
        _probe_hub(uri)
    try:
        return datasets.load_dataset(repo, split=split)
    except Exception as err:  # offline, unknown repo or split: all mean the data is not here
        raise FileNotFoundError(f"{uri}: could not load {repo!r} split {split!r} from the Hugging Face "
                                f"hub ({type(err).__name__}: {err}). {OFFLINE_HINT}") from err


def _probe_hub(uri):
    """One connection to the hub, so that a machine without network fails at once, in one
    line, rather than after `datasets`' retries and timeouts."""
    endpoint = urllib.parse.urlsplit(datasets.config.HF_ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT).close()
    except OSError as err:
        raise FileNotFoundError(f"{uri}: the Hugging Face hub ({host}) cannot be reached ({err}); with the "
                                f"dataset in the local cache, set HF_HUB_OFFLINE=1. {OFFLINE_HINT}") from None


def _pick_split(splits, split, uri):
    """splits[split] (default train); the key None marks a dataset without splits."""
    if None in splits:
        if split is not None:
            raise ValueError(f"{uri}: this dataset has no splits; leave out ':{split}'")
        return splits[None]
    split = split or "train"
    if split not in splits:
        raise ValueError(f"{uri}: unknown split {split!r}; available: {', '.join(sorted(splits))}")
    return splits[split]


# ---------------------------------------------------------------------------------------
# Torch side: fixed-size items, augmentation, batches

#: The GT segments of a scene read without GT.
NO_SEGMENTS = np.zeros((0, 2, 3), np.float32)


class SceneDataset(torch.utils.data.Dataset):
    """Scenes as fixed-size training items.

    Points: the valid points first, padded to `n_points` by repeating the last valid one
    (the datasets' own convention) with mask False. A scene with more valid points than
    `n_points` raises: subsampling would change the datasets' tiered sampling, so open
    the dataset sampled to `n_points` instead. GT segments are zero-padded to MAX_GT_EDGES
    (a scene read without GT has none: `gt_mask` is all False).

    augment: {"rotate": bool, "flip": bool}: a uniform rotation about the vertical Y axis
    and a mirror x -> -x with probability 1/2, applied alike to `xyz_norm` and
    `gt_segments` (normalised space; center/scale and the metre fields stay). The item's
    `aug` matrix A gives augmented = original @ A.T, so original = augmented @ A.

    Item i of epoch e, `dataset[(e, i)]` (`dataset[i]`: epoch 0), draws its randomness from
    (seed, e, i) only, so items depend neither on the loader's worker count nor on which
    worker made them, and one loader can serve every epoch of a run.
    """

    def __init__(self, scenes, n_points, augment=None, seed=0):
        augment = dict(augment or {})
        unknown = set(augment) - {"rotate", "flip"}
        if unknown:
            raise ValueError(f"augment: unknown keys {sorted(unknown)}; expected rotate, flip")
        self.scenes, self.n_points, self.seed = scenes, n_points, seed
        self.rotate, self.flip = bool(augment.get("rotate")), bool(augment.get("flip"))

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        scene = self.scenes[index]
        item = fit_points(scene, self.n_points)
        segments = scene.get("gt_segments", NO_SEGMENTS)
        n_edges = len(segments)
        item["gt_segments"] = np.zeros((MAX_GT_EDGES, 2, 3), np.float32)
        item["gt_segments"][:n_edges] = segments
        item["gt_mask"] = np.arange(MAX_GT_EDGES) < n_edges
        rng = np.random.default_rng([self.seed, epoch, index])
        item["aug"] = augmentation(rng, self.rotate, self.flip)
        item["xyz_norm"] = item["xyz_norm"] @ item["aug"].T
        item["gt_segments"] = item["gt_segments"] @ item["aug"].T
        item.update(center=scene["center"], scale=scene["scale"], order_id=scene["order_id"])
        return item


def fit_points(scene, n_points):
    """The point fields of `scene` that a batch holds (BATCH_DTYPES) with exactly `n_points`
    rows: valid points first, then the last valid one repeated (mask False)."""
    check_points(scene, n_points)
    valid = np.flatnonzero(scene["mask"])
    take = np.concatenate([valid, np.full(n_points - len(valid), valid[-1])])
    points = {name: scene[name][take] for name in POINT_FIELDS if name in BATCH_DTYPES}
    points["mask"] = np.arange(n_points) < len(valid)
    return points


def check_points(scene, n_points):
    """Refuse a scene with more valid points than a batch holds (`n_points`, params data.points)."""
    valid = int(np.count_nonzero(scene["mask"]))
    if valid > n_points:
        raise ValueError(f"scene {scene['order_id']!r} has {valid} valid points, more than "
                         f"n_points={n_points}: use the dataset sampled to {n_points} points")


def augmentation(rng, rotate, flip):
    """A 3x3 float32 matrix: a rotation about Y by a uniform angle, after a mirror x -> -x
    with probability 1/2. Both draws are always made, so switching one off leaves the
    other's sequence unchanged."""
    angle, mirror = rng.uniform(0.0, 2.0 * np.pi), rng.random() < 0.5
    matrix = np.eye(3)
    if flip and mirror:
        matrix[0, 0] = -1.0
    if rotate:
        c, s = np.cos(angle), np.sin(angle)
        matrix = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]) @ matrix
    return matrix.astype(np.float32)


def collate(items):
    """Stack SceneDataset items into the batch contract (see BATCH_DTYPES)."""
    batch = {name: torch.from_numpy(np.stack([item[name] for item in items])).to(dtype)
             for name, dtype in BATCH_DTYPES.items()}
    batch["order_id"] = [item["order_id"] for item in items]
    batch["padded"] = not bool(batch["mask"].all())
    return batch


def check_device(name):
    """torch.device(name) where this machine has that device; else one line saying so
    (torch would fail at the first tensor moved there, mid-way and with a traceback)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: expected cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and count == 0:
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= count:
        raise ValueError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def to_device(batch, device, non_blocking=True):
    """The batch with its tensors on `device` (order_id stays a list)."""
    return {name: value.to(device, non_blocking=non_blocking) if torch.is_tensor(value) else value
            for name, value in batch.items()}
