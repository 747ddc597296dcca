"""Score a checkpoint or a submission: `python -m s23dr.evaluate CHECKPOINT|submission.json DATA_URI`.

Prints the mean HSS / F1 / IoU over the scenes (the official metric: the book, Introduction) and,
with `--per-scene FILE` (never an input), writes one JSON record per scene. Every scene needs its GT
fields; a scene without them is named.
"""

from dataclasses import asdict
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import rundir
from .data import check_device, open_dataset
from .metrics import score_scenes
from .predict import command_parser, inputs_read, load_model, submission


RECORD = "{order_id, wf_vertices, wf_edges}"

#: The most vertices or edges a submitted scene may hold: far beyond any house's wireframe (a
#: scene's GT has at most 64 edges), far below what would keep the metric busy for hours.
MAX_ELEMENTS = 10_000


def read_submission(path):
    """{order_id: (vertices [V,3] float, edges [E,2] int)} of a submission file, every record
    checked field by field: a bad one is one line naming the file, the scene and the field,
    not a traceback (or a quietly wrong score) from inside the metric."""
    try:
        records = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a submission, not valid JSON ({err})") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: not a submission (a JSON list of {RECORD}), found a {type(records).__name__}")
    predicted = {}
    for i, record in enumerate(records):
        order_id = record.get("order_id") if isinstance(record, dict) else None
        if not isinstance(order_id, str):
            raise ValueError(f"{path}: record {i} should be a mapping {RECORD} with a string order_id, "
                             f"got {str(record)[:80]}")
        if order_id in predicted:
            raise ValueError(f"{path}: order_id {order_id!r} appears more than once")
        where = f"{path}: scene {order_id!r}"
        vertices = _field(record, "wf_vertices", 3, where)
        edges = _field(record, "wf_edges", 2, where)
        for name, field in (("wf_vertices", vertices), ("wf_edges", edges)):
            if len(field) > MAX_ELEMENTS:
                raise ValueError(f"{where}: field {name!r} holds {len(field)} entries, more than {MAX_ELEMENTS}")
        if not np.isfinite(vertices).all():
            raise ValueError(f"{where}: field 'wf_vertices' holds NaN or inf")
        if edges.size and (edges.min() < 0 or edges.max() >= len(vertices)):
            raise ValueError(f"{where}: field 'wf_edges' should index the {len(vertices)} vertices (0 to "
                             f"{len(vertices) - 1}), found {edges.min()} to {edges.max()}")
        predicted[order_id] = (vertices, edges)
    return predicted


def _field(record, name, width, where):
    """record[name] as an array [N, width]: floats for the vertices, integers for the edges."""
    if name not in record:
        raise ValueError(f"{where}: missing field {name!r}")
    try:
        a = np.asarray(record[name])
    except ValueError:
        a = None  # a ragged list
    numeric = a is not None and (a.dtype.kind in "iu" or (width == 3 and a.dtype.kind == "f"))
    if a is not None and a.size == 0:
        a, numeric = a.reshape(0, width), True
    if not numeric or a.ndim != 2 or a.shape[1] != width:
        what = "numbers" if width == 3 else "integer vertex indices"
        found = "a ragged list" if a is None else f"shape {a.shape}, dtype {a.dtype}"
        raise ValueError(f"{where}: field {name!r} should be a list of [{width}] {what}, found {found}")
    return a.astype(np.float64 if width == 3 else np.int64)


def score_source(source, data_uri, device="cpu", progress=False):
    """Per-scene and mean scores of a checkpoint (`.pt`) or a submission (`.json`) on a
    dataset: a checkpoint at the thresholds of its params (`eval.vert_thresh`,
    `eval.edge_thresh`), a submission at the official metric's own. A submission must
    predict exactly the dataset's scenes: one missing, or one the dataset lacks (another
    split, say), is named. With `progress`, a bar counts the scenes scored."""
    dataset = open_dataset(data_uri)
    scenes = [dataset[i] for i in range(len(dataset))]
    thresholds = {}
    if str(source).endswith(".json"):
        predicted = read_submission(source)
        ids = [s["order_id"] for s in scenes]
        missing = [i for i in ids if i not in predicted]
        extra = sorted(set(predicted) - set(ids))
        problems = []
        if missing:
            problems.append(f"no prediction for {len(missing)} scenes of {data_uri}, e.g. {missing[0]}")
        if extra:
            problems.append(f"{len(extra)} predicted scenes are not in {data_uri}, e.g. {extra[0]}")
        if problems:
            raise ValueError(f"{source}: {'; '.join(problems)}")
    else:
        model, params = load_model(source, torch.device(device))
        thresholds = {key: params["eval"][key] for key in ("vert_thresh", "edge_thresh")}
        predicted = {r["order_id"]: (r["wf_vertices"], r["wf_edges"])
                     for r in submission(model, params, scenes, torch.device(device))}
    return score_scenes([predicted[s["order_id"]] for s in scenes],
                        [(s["gt_vertices"], s["gt_edges"]) for s in scenes], **thresholds, progress=progress), scenes


def main(argv=None):
    parser = command_parser("evaluate", __doc__, "source",
                            "a checkpoint (.pt), a run directory (its newest checkpoint) or a submission (.json)",
                            "dataset URI with GT, e.g. data/synthetic/sampled_1024:validation")
    parser.add_argument("--per-scene", help="write per-scene scores to this JSON file")
    args = parser.parse_args(argv)
    try:
        if args.per_scene:
            rundir.check_writable(args.per_scene, "--per-scene", inputs_read(args.source, args.data))
        result, scenes = score_source(args.source, args.data, check_device(args.device), progress=True)
        if args.per_scene:
            rows = [{"order_id": s["order_id"], **asdict(r)} for s, r in zip(scenes, result.scenes)]
            with rundir.atomic_write(args.per_scene) as f:
                f.write(json.dumps(rows, indent=1).encode())
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mean = result.mean
    print(f"{len(scenes)} scenes: HSS {mean.hss:.4f}  F1 {mean.f1:.4f}  IoU {mean.iou:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
