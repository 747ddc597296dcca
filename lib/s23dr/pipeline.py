"""The main job: synthetic data, every notebook in dependency order, the book.

`python -m s23dr.pipeline book --profile cpu` generates the synthetic dataset the
profile trains on, executes the notebooks with papermill into `book/executed/`, and
builds the Jupyter Book into `_build/html` with warnings as errors. A notebook is
executed again only when its inputs changed: its source, the params, the library or an
upstream notebook. Training inside the notebooks has its own cache (`train.run_stage`).
The second half of the module is what the notebooks call: their params, training,
metrics and evaluation in one line each.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from importlib.resources import files
from pathlib import Path

import pandas as pd
import torch

# In a Jupyter kernel without ipywidgets, tqdm.auto warns and falls back to text bars: fine here.
warnings.filterwarnings("ignore", message="IProgress not found")

from . import checkpoint
from .config import load_params
from .data import SceneDataset, collate, open_dataset
from .inference import first, predict, score, score_predictions
from .losses import Criterion
from .model import Perceiver
from .predict import load_model
from .train import run_stage, stage_runs
from .trainer import MetricsLog, data_uri, init_queries, make_optimizer

EXECUTED = Path("book/executed")
PLOTLY_JS = Path("book/_static/plotly.min.js")
CHECK = "# NBVAL_CHECK_OUTPUT"  # marks a cell whose output nbval compares

#: The notebooks in execution order, each with the notebooks whose results it reads.
#: (ablation_high_lr trains from stage 1's checkpoint and is compared with stage 2.)
NOTEBOOKS = {
    "data": [],
    "reproducibility": [],
    "stage1": [],
    "stage2": ["stage1"],
    "stage3": ["stage2"],
    "ablation_4096_scratch": ["stage1"],
    "ablation_high_lr": ["stage2"],
    "results": ["reproducibility", "stage1", "stage2", "stage3", "ablation_4096_scratch", "ablation_high_lr"],
}

#: The notebooks that train `params/<name>.yaml`, in an order where each upstream stage comes first.
STAGES = ("stage1", "stage2", "stage3", "ablation_4096_scratch", "ablation_high_lr")


def synthetic_points(profile):
    """The point counts a profile trains on (stage 1's and stage 2's)."""
    return sorted({load_params(f"params/{stage}.yaml", profile)["data"]["points"]
                   for stage in ("stage1", "stage2")})


def build_data(profile):
    """Generate the synthetic dataset of a profile unless it is there already, made by the
    same generator with the same sizes (or the profile trains on other data, as `full`
    does on the hub); return its root or None."""
    from .synthetic import build_dataset

    params = load_params("params/stage1.yaml", profile)
    syn = params["data"]["synthetic"]
    root = Path(syn["root"])
    if not Path(params["data"]["train"]).is_relative_to(root):
        return None
    source = b"".join((Path(__file__).parent / name).read_bytes() for name in ("synthetic.py", "houses.py"))
    stamp = json.dumps({**syn, "generator": hashlib.sha256(source).hexdigest()[:16]}, sort_keys=True)
    wanted = [p for p in synthetic_points(profile)
              if not (root / f"sampled_{p}" / "dataset_dict.json").is_file()
              or not (root / f"sampled_{p}" / "synthetic.json").is_file()
              or (root / f"sampled_{p}" / "synthetic.json").read_text() != stamp]
    if wanted:
        for path in build_dataset(root, syn["train"], syn["val"], points=tuple(wanted), seed=syn["seed"],
                                  world=syn["world"]).values():
            (Path(path) / "synthetic.json").write_text(stamp)
    return root


def inputs_hash(name, profile, runs, done):
    """What an executed notebook depends on; it is executed again when this changes."""
    digest = hashlib.sha256()
    for path in [Path(f"notebooks/{name}.ipynb"), *sorted(Path("params").glob("*.yaml")),
                 *sorted(Path("lib/s23dr").glob("*.py"))]:
        digest.update(path.read_bytes())
    digest.update(json.dumps([profile, str(runs), [done[d] for d in NOTEBOOKS[name]]]).encode())
    return digest.hexdigest()


def execute_notebooks(profile, runs="runs", only=None):
    """Execute the notebooks with papermill in dependency order, skipping current ones."""
    import papermill

    EXECUTED.mkdir(parents=True, exist_ok=True)
    done = {}
    for name in NOTEBOOKS:
        done[name] = inputs_hash(name, profile, runs, done)
        out, stamp = EXECUTED / f"{name}.ipynb", EXECUTED / f"{name}.inputs"
        if only and name not in only:
            continue
        if out.is_file() and stamp.is_file() and stamp.read_text() == done[name]:
            print(f"{name}: current")
            continue
        print(f"{name}: executing")
        stamp.unlink(missing_ok=True)
        papermill.execute_notebook(f"notebooks/{name}.ipynb", str(out), cwd=str(Path.cwd()),
                                   parameters={"profile": profile, "runs": str(runs)},
                                   progress_bar=False, kernel_name="python3")
        stamp.write_text(done[name])


def record_checks(profile="smoke", runs="runs"):
    """Store in `notebooks/` the outputs that nbval compares (the cells marked
    `# NBVAL_CHECK_OUTPUT`): each notebook is executed at `profile` on one thread, as
    conftest.py runs them, and its check cells' outputs are copied into the template.
    Run it after a change that is meant to move those numbers, and review the diff."""
    import nbformat
    import papermill

    os.environ["OMP_NUM_THREADS"] = "1"  # the kernels started below, and this process
    torch.set_num_threads(1)
    prepare_runs(profile, runs)
    with tempfile.TemporaryDirectory() as tmp:
        for name in NOTEBOOKS:
            template, out = Path(f"notebooks/{name}.ipynb"), Path(tmp) / f"{name}.ipynb"
            papermill.execute_notebook(str(template), str(out), cwd=str(Path.cwd()),
                                       parameters={"profile": profile, "runs": str(runs)},
                                       progress_bar=False, kernel_name="python3")
            executed = {c.source: c for c in nbformat.read(out, 4).cells if CHECK in c.source}
            notebook = nbformat.read(template, 4)
            for cell in notebook.cells:
                if CHECK in cell.source:  # nbval skips a reference cell without an execution count
                    cell.outputs = executed[cell.source].outputs
                    cell.execution_count = executed[cell.source].execution_count
            nbformat.write(notebook, template)
            print(f"{template}: {sum(CHECK in c.source for c in notebook.cells)} check cells recorded")


def build_book():
    """Sphinx build of the book from the executed notebooks into `_build/html`; any warning fails it.

    The plotly figures are HTML without plotly.js; the book loads the plotly package's
    own copy from `book/_static/` (_config.yml: html_js_files), so pages work offline.
    """
    import re

    PLOTLY_JS.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files("plotly") / "package_data" / "plotly.min.js", PLOTLY_JS)
    # jupyter_book has no __main__ module, so call its command line's entry point. --all:
    # numbers pasted from other pages (glue `notebook::key`) are no Sphinx dependency, so an
    # incremental build could keep stale ones. --keep-going: report every warning, then fail.
    cli = "from jupyter_book.cli.main import main; main()"
    subprocess.run([sys.executable, "-c", cli, "build", ".", "--all", "--warningiserror", "--keep-going"], check=True)
    # Offline means no page loads a script, style or image from the network (MathJax from a CDN, say).
    remote = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(?:https?:)?//')
    online = sorted(str(p) for p in Path("_build/html").rglob("*.html") if remote.search(p.read_text(errors="replace")))
    if online:
        raise RuntimeError(f"these pages load remote assets, but the book must read offline: {', '.join(online)}")


# ---------------------------------------------------------------------------------------
# What the notebooks call


def chdir_root(start=None):
    """Change to the project root and return it: the nearest folder at or above `start`
    (default: the working directory) holding params/base.yaml, else the project this
    package was installed from (editable), so a notebook runs from any cwd."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if (folder / "params" / "base.yaml").is_file():
            os.chdir(folder)
            return folder
    raise FileNotFoundError(f"no params/base.yaml in {here} or any folder above it, nor beside "
                            f"the installed package: run the notebook inside the project")


def notebook_params(path, profile, data=None, seed=None):
    """A params file as a notebook's parameters ask: `data` a dataset URI prefix (the profile's
    own data when None) to which `:train` and `:validation` are appended, `seed` the training seed."""
    overrides = [f"data.train={data}:train", f"data.val={data}:validation"] if data else []
    if seed is not None:
        overrides.append(f"train.seed={int(seed)}")
    return load_params(path, profile, overrides)


def recipe_table(params):
    """The keys that tell the stages apart, one row per run (one per LR of `sweep_lr`)."""
    rows = []
    for run, run_dir in stage_runs(params, "."):
        sched = run["schedule"]
        cooldown = sched["cooldown_start"]
        rows.append({"run": run_dir.name, "init_from": run["init_from"] or "scratch",
                     "points": run["data"]["points"], "batch": run["train"]["batch_size"],
                     "steps": f"{sched['start_step']} -> {sched['end_step']}", "lr": f"{sched['lr']:g}",
                     "warmup": sched["warmup"],
                     "cooldown": "none" if cooldown is None else f"{cooldown} +{sched['cooldown_steps']}",
                     "endpoint": run["loss"]["endpoint"]["weight"], "train data": data_uri(run, "train")})
    return pd.DataFrame(rows).set_index("run")


#: The params groups in which a profile may depart from the seed's recipe, beyond the scaling
#: of steps, LRs, points and batch that `recipe_table` shows.
RECIPE_GROUPS = ("model.", "loss.", "optim.", "data.augment.", "data.synthetic.world.")


def departures(params, path):
    """Where `params` (a profile's run of the params file `path`) departs from the seed's
    recipe (the same file at `full`): one row per key of RECIPE_GROUPS, ours beside the
    seed's; empty at `full`. Every stage page shows it, so a switch a profile turns on
    (a smaller model, `loss.matching`, an easier world) is never silent."""
    ours, seed = (checkpoint.flatten(p) for p in (params, load_params(path, "full")))
    rows = [{"key": key, "this profile": ours.get(key), "seed's recipe": seed.get(key)}
            for key in sorted(ours.keys() | seed.keys())
            if key.startswith(RECIPE_GROUPS) and ours.get(key) != seed.get(key)]
    return pd.DataFrame(rows, columns=["key", "this profile", "seed's recipe"]).set_index("key")


def train_stage(params, runs="runs", device=None, init=None):
    """Train every run of a stage unless current (`train.run_stage`, retraining a stale run).

    Returns the final checkpoints and the wall-clock minutes spent training now (None
    when every run was current and nothing was trained).
    """
    start = time.time()
    finals = run_stage(params, runs, device, init=init, restart=True, progress=False)
    trained = any(path.stat().st_mtime >= start for path in finals)
    return finals, (time.time() - start) / 60 if trained else None


def run_label(params, run):
    """How the notebooks name one run of a stage: the stage, and for each run of a sweep
    `<stage> lr=<its LR>`."""
    return f"{params['stage']} lr={run['schedule']['lr']:g}" if params["sweep_lr"] else params["stage"]


def run_metrics(params, runs="runs"):
    """{run_label: metrics rows} of each run of a stage; a run not trained yet is left out."""
    out = {}
    for run, run_dir in stage_runs(params, runs):
        log = run_dir / "metrics.jsonl"
        if log.is_file():
            out[run_label(params, run)] = MetricsLog.read(log)
    return out


def summary(rows, params, minutes=None):
    """A run's headline numbers: the last evaluation's HSS, F1, IoU and train/val loss ratio,
    its final global step, and `minutes` of training (when None: the training loop's time
    read from the log's throughput, evaluations not counted)."""
    last = [r for r in rows if r["kind"] == "eval"][-1]
    if minutes is None:
        step, seconds = params["schedule"]["start_step"], 0.0
        for row in (r for r in rows if r["kind"] == "train"):
            seconds += (row["step"] - step) * params["train"]["batch_size"] / row["samples_per_s"]
            step = row["step"]
        minutes = seconds / 60
    return {"hss": last["hss"], "f1": last["f1"], "iou": last["iou"], "ratio": last["ratio"],
            "steps": last["step"], "minutes": minutes}


def first_losses(params, steps=4):
    """One line per run, '<run>: loss at init 0.1234 (its terms), after N steps 0.123': the
    stage notebooks' regression check.

    Each run's model is built from `train.seed` and takes `steps` AdamW updates at the run's
    LR (`schedule.lr`) on its first training batch (its point count, augmentation and loss
    terms), in eval mode so that no dropout draw enters. These numbers follow the library's
    code and the params (the Sinkhorn's eps moves them in the second decimal) but hardly the
    CPU's kernels, where the end of a trained trajectory (and stage 2 starts from the end of
    stage 1's) does: between ATEN_CPU_CAPABILITY=default and avx2 the loss at init differs
    by 3e-8 and after 4 steps by up to 1.3e-6, after 5 by 4e-5 and after 8 by 1.5e-3 (Adam
    amplifies rounding). Hence 4 steps, printed to 3 decimals. At init every residual branch
    is zero, so the points reach the loss only from the third update on.
    """
    lines = []
    for run, _ in stage_runs(params, "."):
        torch.manual_seed(run["train"]["seed"])
        model = Perceiver(**run["model"]).eval()
        optimizer = make_optimizer(model, run)
        criterion = Criterion(**run["loss"])
        training = open_dataset(data_uri(run, "train"))
        if run["init_from"] is None:
            init_queries(model, training, run)
        scenes = first(training, run["train"]["batch_size"])
        items = SceneDataset(scenes, run["data"]["points"], run["data"]["augment"], run["train"]["seed"])
        batch = collate([items[i] for i in range(len(items))])
        at_init = criterion(model(batch), batch)
        terms = at_init
        for _ in range(steps):
            optimizer.zero_grad()
            terms["total"].backward()
            optimizer.step()
            terms = criterion(model(batch), batch)
        parts = ", ".join(f"{k} {v.item():.4f}" for k, v in at_init.items() if k != "total")
        lines.append(f"{run_label(params, run)}: loss at init {at_init['total'].item():.4f} ({parts}), "
                     f"after {steps} steps {terms['total'].item():.3f}")
    return "\n".join(lines)


def _with_val_scenes(path, device=None, n=None):
    """(model, params, device, the first `n` validation scenes, default `eval.max_scenes`)
    of a checkpoint, on `device` (default: cuda if available, else cpu)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, params = load_model(path, device)
    return model, params, device, first(open_dataset(data_uri(params, "val")), n or params["eval"]["max_scenes"])


def evaluate_checkpoint(path, device=None, n=None):
    """(scenes, predicted wireframes, per-scene scores) of a checkpoint on the first `n`
    (default `eval.max_scenes`) validation scenes of the params it was trained with."""
    model, params, device, scenes = _with_val_scenes(path, device, n)
    frames, scores, _ = score(model, scenes, params, device)
    return scenes, frames, scores


def threshold_sweep(path, thresholds, device=None, n=None):
    """(a table of mean HSS / F1 / IoU at each confidence threshold, every query's confidence)
    of a checkpoint on the first `n` (default `eval.max_scenes`) validation scenes: how much
    the scores owe to `eval.conf_threshold`, and whether any confidence reaches it."""
    model, params, device, scenes = _with_val_scenes(path, device, n)
    segments, conf, _ = predict(model, scenes, params, device)
    rows = []
    for threshold in thresholds:
        at = {**params, "eval": {**params["eval"], "conf_threshold": threshold}}
        mean = score_predictions(scenes, segments, conf, at)[1].mean
        rows.append({"threshold": threshold, "hss": mean.hss, "f1": mean.f1, "iou": mean.iou})
    return pd.DataFrame(rows).set_index("threshold"), conf


def learning_speed_table(folder="benchmarks/results/learning_speed"):
    """The runs of `benchmarks/learning_speed.py` saved in `folder`, one row each: what it
    tried, and its figures at its last step on the scenes it fitted."""
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        run = json.loads(path.read_text())
        last = run["rows"][-1]
        rows.append({"run": run["label"], "scenes": run["scenes"], "steps": last["step"],
                     "HSS@0.7": last["hss"], "HSS@0.3": last["hss_low"], "highest confidence": last["max_conf"],
                     "GT mass in dustbin": last["gt_dustbin"], "best mass per GT": last["best_mass"],
                     "transport term": last["sinkhorn"], "reached HSS 0.8 at step": run["steps_to_target"]})
    return pd.DataFrame(rows).astype({"reached HSS 0.8 at step": "Int64"}).set_index("run")


def prepare_runs(profile, runs="runs"):
    """The data and every stage's runs of a profile, trained in dependency order (the test suite's setup)."""
    build_data(profile)
    for name in STAGES:
        train_stage(load_params(f"params/{name}.yaml", profile), runs)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m s23dr.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["data", "notebooks", "book", "checks"],
                        help="checks: record the outputs that nbval compares, at the smoke profile by default")
    parser.add_argument("--profile", default=None, help="default: cpu (checks: smoke)")
    parser.add_argument("--runs", default="runs", help="root of the run directories (default: runs)")
    parser.add_argument("--only", nargs="*", help="execute only these notebooks")
    args = parser.parse_args(argv)
    args.profile = args.profile or ("smoke" if args.what == "checks" else "cpu")
    build_data(args.profile)
    if args.what == "checks":
        record_checks(args.profile, args.runs)
    if args.what in ("notebooks", "book"):
        execute_notebooks(args.profile, args.runs, args.only)
    if args.what == "book":
        build_book()
    return 0


if __name__ == "__main__":
    sys.exit(main())
