"""What the commands leave on disk, and when it is current: the run directory's lock,
atomic writes and the temporary files of killed ones, the metrics log, the code version,
and the one staleness rule of every product.

A product (a run's final checkpoint, a synthetic dataset, an executed notebook) is
current when the stamp beside it (`step000100.inputs` beside `step000100.pt`) is the hash
of its inputs: the params that make it, the code version of the modules that make it and
the stamps of what it is made from. The stamp is removed before a product is made again
and written once it is complete, so a product killed half-made is never current
(`is_current`). A training run is current only while the runs it starts from are current
too, at their stages' recipes now (`train.stale_upstream`).

A training holds its run directory's `lock` (`run_lock`), so a second one there is refused
instead of overwriting its checkpoints; files are written whole or not at all (`atomic_write`).
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
import warnings
from pathlib import Path

from . import __version__

PACKAGE = Path(__file__).parent


# --- the code version -----------------------------------------------------------------

def imported_modules(entry):
    """The package's modules that module `entry` (e.g. "train", "world.synthetic") runs:
    itself and every module it imports from the package, directly or through another, read
    from the sources' relative import statements (function-level ones included). A module
    that only presents or orchestrates results (the `analysis` subpackage, pipeline, bench)
    is not among a training run's, so editing it retrains nothing."""
    found, todo = {}, [entry]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in found or path is None:
            continue
        found[name] = path
        here = name.split(".")[:-1]  # the subpackage it lies in
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                base = here[:len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                todo += [".".join(base + [alias.name]) for alias in node.names] + [".".join(base)]
    return [found[name] for name in sorted(found)]


def _module_file(name):
    """The source file of package module `name` ("loop", "world.houses", "world"), or None."""
    if not name:
        return None
    stem = PACKAGE.joinpath(*name.split("."))
    for path in (stem.with_suffix(".py"), stem / "__init__.py"):
        if path.is_file():
            return path
    return None


def files_hash(paths):
    """A hash of the names and contents of the files `paths` (not of where they lie, so
    that two checkouts of the same code agree)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def code_version(entry=None):
    """The package version and a hash of the source of the modules `entry` runs
    (`imported_modules`), or of every module of the package when `entry` is None."""
    modules = imported_modules(entry) if entry else sorted(PACKAGE.rglob("*.py"))
    return f"{__version__}+{files_hash(modules)}"


# --- the one staleness rule -----------------------------------------------------------

def stamp(inputs):
    """The hash of a product's inputs (a JSON-able tree: params, code versions, upstream stamps)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stamp_file(product):
    """Where the stamp of `product` lies: beside it, `<product without suffix>.inputs`."""
    return Path(product).with_suffix(".inputs")


def is_current(product, inputs):
    """Whether `product` exists and the stamp beside it is `stamp(inputs)`."""
    file = stamp_file(product)
    return Path(product).exists() and file.is_file() and file.read_text() == stamp(inputs)


def mark_stale(product):
    """Remove the stamp of `product`, before it is made again."""
    stamp_file(product).unlink(missing_ok=True)


def mark_current(product, inputs):
    """Write the stamp of `product`, made from `inputs`, once it is complete."""
    with atomic_write(stamp_file(product)) as f:
        f.write(stamp(inputs).encode())


def stamp_of(product):
    """The stamp beside `product`, or None where it has none (not made, or not yet complete)."""
    file = stamp_file(product)
    return file.read_text() if file.is_file() else None


def kept(path, inputs, make):
    """`make()`'s JSON-able result, kept in the file `path`: read from there while it is current
    (`is_current` with `inputs`), else made, written whole and stamped. What a page reads of a
    finished run (its checkpoint scored otherwise, say) is made once, beside the run."""
    if is_current(path, inputs):
        return json.loads(Path(path).read_text())
    found = make()
    mark_stale(path)
    with atomic_write(path) as f:
        f.write(json.dumps(found).encode())
    mark_current(path, inputs)
    return found


# --- atomic writes --------------------------------------------------------------------

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


def check_writable(path, what, inputs=()):
    """Refuse an output file that could not be written, or that is one of the command's
    `inputs` (files or folders) or lies within one, before the work that makes it."""
    path = Path(path)
    for given in inputs:
        if path.resolve().is_relative_to(Path(given).resolve()):
            how = "is" if path.resolve() == Path(given).resolve() else "lies within"
            raise ValueError(f"{what} {path} {how} the input {given}; name another file")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; name a file")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{what} {path}: folder {folder} is not writable")


def remove_files(folder):
    """Remove the files in `folder` (a run's), not the folders within it (other runs': a
    stage's seeds or LRs), and `folder` itself once empty."""
    for file in Path(folder).iterdir():
        if not file.is_dir() or file.is_symlink():
            file.unlink()
    with contextlib.suppress(OSError):
        Path(folder).rmdir()


# --- the lock and what killed processes left ------------------------------------------

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


# --- the metrics log ------------------------------------------------------------------

class MetricsLog:
    """Append-only JSONL of rows with a `step` and a `kind` ("train", "eval", "final": the last
    step's evaluation on `eval.final_scenes`, "run": how it computed), picked by `evals`,
    `final`, `trains` and `run_row` so no reader spells the kinds. On resume, rows past
    the step are dropped (the log rewritten atomically, so a kill then loses none of the rows kept)."""

    FILE = "metrics.jsonl"  #: the log's name in a run directory

    def __init__(self, path, resume_step=None, enabled=True):
        self.path, self.enabled = Path(path), enabled
        if enabled and resume_step is not None and self.path.exists():
            rows = [r for r in self.read(self.path) if r["step"] <= resume_step]
            with atomic_write(self.path) as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows).encode())

    @staticmethod
    def evals(rows):
        return [r for r in rows if r["kind"] == "eval"]

    @staticmethod
    def final(rows):
        """The final evaluation (the row every verdict reads), or, in a log without one (an
        unfinished run), its last evaluation."""
        return next((r for r in reversed(rows) if r["kind"] == "final"), None) or MetricsLog.evals(rows)[-1]

    @staticmethod
    def trains(rows):
        return [r for r in rows if r["kind"] == "train"]

    @staticmethod
    def run_row(rows):
        """How the run computed at its start (its first "run" row), or None if it logged none."""
        return next((r for r in rows if r["kind"] == "run"), None)

    def write(self, row):
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")

    @staticmethod
    def read(path):
        """The rows of the log `path`. A torn last line (a kill while it was written) is dropped with
        a warning, so the run resumes; any other line that is not a row is an error naming `file:line`."""
        lines = [(n, line) for n, line in enumerate(Path(path).read_text().splitlines(), 1) if line.strip()]
        rows = []
        for n, line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                if n == lines[-1][0]:
                    warnings.warn(f"{path}:{n}: a torn last line (a kill while it was written); dropped")
                    break
                raise ValueError(f"{path}:{n}: not a metrics row ({err})") from None
            if not (isinstance(row, dict) and {"step", "kind"} <= row.keys()):
                raise ValueError(f"{path}:{n}: not a metrics row (expected a mapping with step and kind)")
            rows.append(row)
        return rows

    def evaluated(self, step, kind="eval"):
        """Whether the log holds the evaluation of `step` (of `kind`, "eval" or "final")."""
        return self.path.is_file() and any(r["step"] == step and r["kind"] == kind for r in self.read(self.path))
