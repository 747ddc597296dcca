"""Checkpoints: written atomically, named by global step, checked against the params.

A checkpoint is `<run_dir>/stepNNNNNN.pt` holding the model, the optimizer, the RNG
states, the global step, the params that made it and the code version. It is written to
a temporary file and renamed, so a crash never leaves a half-written checkpoint and
the last good one survives; a failed write (a full disk) says so, naming the file. The
commands' output files are written the same way (`check_writable`, `atomic_write`).

A training holds its run directory's `lock` file (pid and host) while it runs, so a
second training there is refused instead of overwriting the first one's checkpoints.
"""

import ast
import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
from pathlib import Path

import torch

from . import __version__
from .config import architecture

STEP_FILE = re.compile(r"^step(\d{6,})\.pt$")


def imported_modules(entry):
    """The package's modules that module `entry` (e.g. "train") runs: itself and every
    module it imports from the package, directly or through another, read from the
    sources' import statements (function-level ones included). A module that only
    presents or orchestrates results (figures, report, pipeline, bench) is not among
    a training run's, so editing it retrains nothing."""
    package = Path(__file__).parent
    found, todo = set(), [entry]
    while todo:
        name = todo.pop()
        if name in found or not (package / f"{name}.py").is_file():
            continue
        found.add(name)
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                todo += [node.module] if node.module else [alias.name for alias in node.names]
    return [package / f"{name}.py" for name in sorted(found)]


def source_hash(entry):
    """A hash of the source of `imported_modules(entry)`."""
    digest = hashlib.sha256()
    for path in imported_modules(entry):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def code_version():
    """The package version and a hash of the source that shapes a run's result: the
    training command's modules (`imported_modules("train")`)."""
    return f"{__version__}+{source_hash('train')}"


def path_for(run_dir, step):
    return Path(run_dir) / f"step{step:06d}.pt"


def latest(run_dir):
    """The checkpoint with the highest step in `run_dir`, or None."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("step*.pt")
             if (m := STEP_FILE.match(p.name))]
    return max(found)[1] if found else None


def save(state, path):
    """Write `state` to `path` atomically (see `atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(state, f)
    return path


#: The temporary file of `atomic_write`: `.<name>.tmp<pid>` beside the file it becomes.
TMP_FILE = re.compile(r"^\..+\.tmp(\d+)$")


@contextlib.contextmanager
def atomic_write(path):
    """A binary file whose content becomes `path` at the end of the block, or never.

    It is a temporary file beside `path`, fsynced and renamed over it, so a crash never
    leaves a half-written `path`. A failed write removes the temporary file and raises
    OSError naming `path`, and a full disk as such (torch reports one as `unexpected pos`).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        full = getattr(err, "errno", None) == errno.ENOSPC or (
            path.parent.is_dir() and shutil.disk_usage(path.parent).free == 0)
        why = f"no space left on the device ({err})" if full else f"{type(err).__name__}: {err}"
        raise OSError(f"cannot write {path}: {why}") from err
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(path, what):
    """Refuse an output file that could not be written, before the work that makes it."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; name a file")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{what} {path}: folder {folder} is not writable")


def _other_runs(pid):
    """Whether a process `pid` other than this one runs on this host (a container restart
    can give this process the pid of a dead one)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    return True


def remove_stale_temps(run_dir):
    """Remove the temporary files that killed processes left in `run_dir` (a kill during a save)."""
    for file in Path(run_dir).iterdir():
        m = TMP_FILE.match(file.name)
        if m and not _other_runs(int(m.group(1))):
            file.unlink(missing_ok=True)


LOCK_FILE = "lock"


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold `run_dir/lock` (pid and host, created atomically) for the block.

    A lock held by a running process is refused, naming the run directory and the pid;
    one whose process has died (on this host) is taken over with a note.
    """
    path = Path(run_dir) / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            break
        except FileExistsError:
            stale = check_unlocked(run_dir)
            if stale is not None:
                print(f"{run_dir}: taking over the lock of pid {stale}, which no longer runs")
                path.unlink(missing_ok=True)
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {socket.gethostname()}\n")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def check_unlocked(run_dir):
    """Raise FileExistsError if a running training holds `run_dir`'s lock; the pid of a
    stale lock's dead process, or None when there is no lock."""
    path = Path(run_dir) / LOCK_FILE
    try:
        pid, host = path.read_text().split()
        pid = int(pid)
    except FileNotFoundError:
        return None
    except ValueError:  # being written this instant, or damaged
        raise FileExistsError(f"{run_dir} is locked by {path}, which names no process; "
                              f"remove it if no training runs there") from None
    if host != socket.gethostname():
        raise FileExistsError(f"{run_dir} is in use by pid {pid} on host {host} ({path}); "
                              f"remove {path} if that training is gone")
    if _other_runs(pid):
        raise FileExistsError(f"{run_dir} is in use by another training, pid {pid} ({path}); "
                              f"wait for it or use another run directory")
    return pid


def load(path, params=None):
    """Read a checkpoint; with `params`, refuse one whose architecture differs and name the keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not {"model", "inputs", "step"} <= state.keys():
        raise ValueError(f"{path}: not an s23dr checkpoint (expected keys model, inputs, step)")
    if params is not None:
        ours, theirs = architecture(params), architecture(state["inputs"]["params"])
        differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if differ:
            detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs params {ours.get(k)!r}"
                               for k in differ)
            raise ValueError(f"{path}: made with other architecture params ({detail})")
    return state


#: Keys that may change between an interrupted run and its resumption.
RESUMABLE = ("schedule.end_step", "train.log_every", "train.eval_every", "train.ckpt_every",
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
    """Dotted keys whose values differ between two nested dicts, skipping `ignore` prefixes."""
    a, b = flatten(old), flatten(new)
    return sorted(k for k in a.keys() | b.keys()
                  if a.get(k) != b.get(k) and not any(k == i or k.startswith(i + ".") for i in ignore))


def inputs_of(params, init_state=None):
    """Everything a run's result depends on: params, code version, and the upstream run's inputs."""
    upstream = None
    if init_state is not None:
        blob = json.dumps(init_state.get("inputs"), sort_keys=True, default=str).encode()
        upstream = {"step": init_state["step"], "inputs": hashlib.sha256(blob).hexdigest()[:16]}
    return {"params": params, "code": code_version(), "upstream": upstream}
