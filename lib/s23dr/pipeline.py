"""The main job: synthetic data, every notebook in dependency order, the book.

`python -m s23dr.pipeline book --profile cpu` generates the synthetic dataset the
profile trains on, executes the notebooks with papermill into `book/executed/`, and
builds the Jupyter Book into `_build/html` with warnings as errors. A notebook is
executed again only when its inputs changed: its source, the params, the library or an
upstream notebook. Training inside the notebooks has its own cache (`train.run_stage`).
"""

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from .checkpoint import code_version
from .config import load_params

ROOT = Path.cwd()
EXECUTED = Path("book/executed")

#: The notebooks in execution order, each with the notebooks whose results it reads.
NOTEBOOKS = {
    "data": [],
    "stage1": [],
    "stage2": ["stage1"],
    "stage3": ["stage2"],
    "ablation_4096_scratch": ["stage1"],
    "ablation_high_lr": ["stage2"],
    "results": ["stage1", "stage2", "stage3", "ablation_4096_scratch", "ablation_high_lr"],
}


def synthetic_points(profile):
    """The point counts a profile trains on (stage 1's and stage 2's)."""
    return sorted({load_params(f"params/{stage}.yaml", profile)["data"]["points"]
                   for stage in ("stage1", "stage2")})


def build_data(profile):
    """Generate the synthetic dataset of a profile unless it is there already."""
    from .synthetic import build_dataset

    syn = load_params("params/stage1.yaml", profile)["data"]["synthetic"]
    root = Path(syn["root"])
    wanted = [p for p in synthetic_points(profile) if not (root / f"sampled_{p}" / "dataset_dict.json").is_file()]
    if wanted:
        build_dataset(root, syn["train"], syn["val"], points=tuple(wanted), seed=syn["seed"])
    return root


def inputs_hash(name, profile, done):
    """What an executed notebook depends on; it is executed again when this changes."""
    digest = hashlib.sha256()
    for path in [Path(f"notebooks/{name}.ipynb"), *sorted(Path("params").glob("*.yaml"))]:
        digest.update(path.read_bytes())
    digest.update(json.dumps([profile, code_version(), [done[d] for d in NOTEBOOKS[name]]]).encode())
    return digest.hexdigest()


def execute_notebooks(profile, only=None):
    """Execute the notebooks with papermill in dependency order, skipping current ones."""
    import papermill

    EXECUTED.mkdir(parents=True, exist_ok=True)
    done = {}
    for name in NOTEBOOKS:
        done[name] = inputs_hash(name, profile, done)
        out, stamp = EXECUTED / f"{name}.ipynb", EXECUTED / f"{name}.inputs"
        if only and name not in only:
            continue
        if out.is_file() and stamp.is_file() and stamp.read_text() == done[name]:
            print(f"{name}: current")
            continue
        print(f"{name}: executing")
        stamp.unlink(missing_ok=True)
        papermill.execute_notebook(f"notebooks/{name}.ipynb", str(out), parameters={"profile": profile},
                                   cwd=str(ROOT), progress_bar=False, kernel_name="python3")
        stamp.write_text(done[name])


def build_book():
    """Sphinx build of the book from the executed notebooks; any warning fails it."""
    subprocess.run([sys.executable, "-m", "jupyter_book", "build", ".", "--warningiserror",
                    "--path-output", "."], check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m s23dr.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["data", "notebooks", "book"])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--only", nargs="*", help="execute only these notebooks")
    args = parser.parse_args(argv)
    build_data(args.profile)
    if args.what in ("notebooks", "book"):
        execute_notebooks(args.profile, args.only)
    if args.what == "book":
        build_book()
    return 0


if __name__ == "__main__":
    sys.exit(main())
