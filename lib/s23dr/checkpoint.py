"""Checkpoints: written atomically, named by global step, checked against the params.

A checkpoint is `<run_dir>/stepNNNNNN.pt` holding the model, the optimizer, the RNG
states, the global step and its inputs (`inputs_of`: the params that made it, the code
version and the upstream run). It is written with `rundir.atomic_write`, so a crash never
leaves a half-written checkpoint and the last good one survives; a failed write (a full
disk) says so, naming the file. It is read with `weights_only`: tensors and plain data
only, so a file whose unpickling would run code is refused, not run. Whether a run is
current is `rundir.is_current` of its final checkpoint and these inputs.
"""

import re
from pathlib import Path

import torch

from .config import architecture
from .rundir import atomic_write, code_version, stamp, stamp_file

STEP_FILE = re.compile(r"^step(\d{6,})\.pt$")


def path_for(run_dir, step):
    return Path(run_dir) / f"step{step:06d}.pt"


def written(run_dir):
    """The checkpoints in `run_dir`, newest (highest step) first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("step*.pt") if (m := STEP_FILE.match(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


def latest(run_dir):
    """The checkpoint with the highest step in `run_dir`, or None."""
    return next(iter(written(run_dir)), None)


def prune(run_dir, keep):
    """Remove all but the newest `keep` checkpoints of `run_dir` (`train.keep_checkpoints`), so a
    long run does not fill the disk; a stamped one (a finished run's final, which the stages after
    it start from and `rundir.is_current` reads) is never removed."""
    for path in written(run_dir)[keep:]:
        if not stamp_file(path).is_file():
            path.unlink(missing_ok=True)


def save(state, path):
    """Write `state` to `path` atomically (`rundir.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(state, f)
    return path


def load(path, params=None):
    """Read a checkpoint; with `params`, refuse one whose architecture differs and name the keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        needs = re.search(r"GLOBAL (\S+)", str(err))  # weights_only names the global it would not import
        if needs:
            raise ValueError(f"{path}: refused: the checkpoint needs {needs.group(1)} to load, "
                             f"which could run code") from None
        raise ValueError(f"{path}: not a checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not {"model", "inputs", "step"} <= state.keys():
        raise ValueError(f"{path}: not an s23dr checkpoint (expected keys model, inputs, step)")
    made_with = state["inputs"].get("params") if isinstance(state["inputs"], dict) else None
    if not (isinstance(made_with, dict) and isinstance(made_with.get("model"), dict)):
        raise ValueError(f"{path}: not an s23dr checkpoint (its inputs hold no params with a model mapping)")
    if params is not None:
        ours, theirs = architecture(params), architecture(state["inputs"]["params"])
        differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if differ:
            detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs params {ours.get(k)!r}"
                               for k in differ)
            raise ValueError(f"{path}: made with other architecture params ({detail})")
    return state


#: Keys that may change between an interrupted run and its resumption.
RESUMABLE = ("schedule.end_step", "train.log_every", "train.eval_every", "train.ckpt_every", "train.keep_checkpoints",
             "train.compile", "train.compile_mode", "data.num_workers", "data.in_memory", "eval", "profile")


def flatten(tree, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(old, new, ignore=()):
    """Dotted keys whose values differ between two nested dicts, skipping the keys `ignore`
    names and those under them: what a resume may not change (`RESUMABLE` skipped), and the
    recipe keys two arms differ in (`analysis.claims`, their names and seeds skipped)."""
    a, b = flatten(old), flatten(new)
    return sorted(k for k in a.keys() | b.keys()
                  if a.get(k) != b.get(k) and not any(k == i or k.startswith(i + ".") for i in ignore))


def inputs_of(params, init_state=None):
    """Everything a run's result depends on: params, the code version of the training command's
    modules, and the checkpoint it starts from (its step and the stamp of its inputs)."""
    upstream = None
    if init_state is not None:
        upstream = {"step": init_state["step"], "inputs": stamp(init_state.get("inputs"))}
    return {"params": params, "code": code_version("train"), "upstream": upstream}
