"""Predict wireframes: `python -m s23dr.predict CHECKPOINT DATA_URI --out submission.json`.

The baseline's `script.py` in command form: one `{order_id, wf_vertices, wf_edges}`
record per scene, vertices in metres. The model's params come from the checkpoint.
The scenes' GT fields are not read (test scenes have none), and `--out` is checked
before inference (never an input: the checkpoint or the dataset) and written atomically.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from . import checkpoint, rundir
from .data import check_device, open_dataset, split_uri
from .inference import predict_segments, to_wireframes
from .model import Perceiver


def load_model(path, device):
    """The model of a checkpoint, or of a run directory's newest one, and the params it was trained with."""
    if Path(path).is_dir():
        newest = checkpoint.latest(path)
        if newest is None:
            raise FileNotFoundError(f"{path}: a folder without checkpoints (step*.pt); name a checkpoint "
                                    f"or a run directory that holds one")
        path = newest
    state = checkpoint.load(path)
    model = Perceiver(**state["inputs"]["params"]["model"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state["inputs"]["params"]


def submission(model, params, scenes, device):
    """Submission records for `scenes`."""
    segments, conf, _ = predict_segments(model, scenes, params, device)
    return [{"order_id": scene["order_id"], "wf_vertices": v.tolist(), "wf_edges": e.tolist()}
            for scene, (v, e) in zip(scenes, to_wireframes(scenes, segments, conf, params))]


def inputs_read(source, data_uri):
    """What a command reads on this machine, which its output must not overwrite: the checkpoint
    (a run directory's newest) or submission `source`, and the folder of a local dataset."""
    source = Path(source)
    if source.is_dir():
        source = checkpoint.latest(source) or source
    location = split_uri(str(data_uri))[0]
    return [source] + ([] if location.startswith("hf://") else [location])


def command_parser(command, doc, source, source_help, data_help):
    """The arguments predict and evaluate share: what to read a model or its predictions from
    (`source`), a dataset URI and --device; each command adds its output."""
    parser = argparse.ArgumentParser(prog=f"python -m s23dr.{command}", description=doc.splitlines()[0])
    parser.add_argument(source, help=source_help)
    parser.add_argument("data", help=data_help)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def main(argv=None):
    parser = command_parser("predict", __doc__, "checkpoint", "a checkpoint, or a run directory (its newest checkpoint)",
                            "dataset URI, e.g. hf://usm3d/s23dr-2026-sampled_4096_v2:validation")
    parser.add_argument("--out", default="submission.json")
    args = parser.parse_args(argv)
    try:
        device = check_device(args.device)
        rundir.check_writable(args.out, "--out", inputs_read(args.checkpoint, args.data))
        model, params = load_model(args.checkpoint, device)
        scenes = open_dataset(args.data, gt=False)
        records = submission(model, params, [scenes[i] for i in range(len(scenes))], device)
        with rundir.atomic_write(args.out) as f:
            f.write(json.dumps(records).encode())
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(records)} scenes -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
