"""What the notebooks call (the book's pages): their params, training, metrics and
evaluation in one line each, and a training notebook's report (the book, Stages).

Each stage and ablation notebook is its narrative plus the calls of one `StageReport`, so
the five pages show the same things the same way and cannot drift apart. The stages a
page draws beside its own on the step axis come from params alone: the chain of
`init_from`, and for an ablation the stage file it inherits from (`inherit:`). The seed's
figures a page quotes come from `params/baseline_results.yaml`.
"""

import ast
import difflib
import json
import os
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import yaml
from myst_nb import glue

from .. import checkpoint
from . import claims, figures, point_counts
from ..config import ParamsError, load_params
from ..data import SceneDataset, collate, data_uri, open_dataset, trains_on_synthetic
from ..experiments import run_label, stage_runs, upstream_stages
from ..inference import autocast, first, predict_segments, score_model, score_predictions
from ..predict import load_model
from ..train import run_stage
from ..loop import build, forward_loss, train_step
from ..metrics import mean_score
from ..postprocess import kept_queries
from ..rundir import MetricsLog


def chdir_root(start=None):
    """Change to the project root and return it: the nearest folder at or above `start`
    (default: the working directory) holding params/base.yaml, else the project this
    package was installed from (editable), so a notebook runs from any cwd. Every notebook
    calls it first, so it also quiets tqdm's warning that a kernel without ipywidgets
    shows text progress bars (fine in a book)."""
    warnings.filterwarnings("ignore", message="IProgress not found")
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if (folder / "params" / "base.yaml").is_file():
            os.chdir(folder)
            return folder
    raise FileNotFoundError(f"no params/base.yaml in {here} or any folder above it, nor beside "
                            f"the installed package: run the notebook inside the project")


#: The notebooks' parameters (each one's `parameters` cell) and what each may be.
PARAMETERS = {"profile": ((str,), "a profile name (a string)"), "params": ((str, os.PathLike), "a params file path"),
              "data": ((str, type(None)), "a dataset URI prefix or None"), "runs": ((str, os.PathLike), "a folder path"),
              "init": ((str, os.PathLike, type(None)), "a checkpoint path or None"),
              "device": ((str, type(None)), "a device name or None"), "seed": ((int, str, type(None)), "an integer or None")}


def check_parameters(namespace):
    """Refuse, in one line naming it, a notebook parameter of another type than `PARAMETERS` says
    (a number for `profile`, say), and a parameter papermill was given that the notebook lacks
    (papermill defines a misspelt one as a new variable and only warns), naming the closest. A
    notebook calls it with its `globals()` in the cell after its `parameters` cell, so after the
    cell papermill injects there (`# Parameters`, found in IPython's input history `In`)."""
    injected = [cell for cell in namespace.get("In", []) if cell.startswith("# Parameters\n")]
    given = [node.id for cell in injected[-1:] for node in ast.walk(ast.parse(cell))
             if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)]
    for name in given:
        if name not in PARAMETERS:
            close = difflib.get_close_matches(name, PARAMETERS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the parameters are {', '.join(PARAMETERS)}"
            raise ParamsError(f"notebook parameter {name} is not one of this notebook's; {hint}")
    for name, (kinds, what) in PARAMETERS.items():
        value = namespace.get(name)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ParamsError(f"notebook parameter {name} should be {what}, got {value!r}")


def notebook_params(path, profile, data=None, seed=None):
    """A params file as a notebook's parameters ask: `data` a dataset URI prefix (the profile's
    own data when None) to which `:train` and `:validation` are appended, `seed` the training seed."""
    overrides = [f"data.train={data}:train", f"data.val={data}:validation"] if data else []
    if seed is not None:
        if isinstance(seed, bool) or not str(seed).lstrip("-").isdigit():
            raise ParamsError(f"notebook parameter seed should be an integer (a training seed) or None, got {seed!r}")
        overrides.append(f"train.seed={int(seed)}")
    return load_params(path, profile, overrides)


def split_at(params, points, split):
    """The scenes of `split` (train or val) of the params' data, sampled to `points` points."""
    return open_dataset(data_uri({**params, "data": {**params["data"], "points": points}}, split))


def recipe_table(params):
    """The keys that tell the stages apart, one row per run (one per LR of `sweep_lr`)."""
    rows = []
    for run, run_dir in stage_runs(params, "."):
        sched = run["schedule"]
        cooldown = sched["cooldown_start"]
        rows.append({"run": run_label(params, run), "init_from": run["init_from"] or "scratch",
                     "points": run["data"]["points"], "batch": run["train"]["batch_size"],
                     "steps": f"{sched['start_step']} -> {sched['end_step']}", "lr": f"{sched['lr']:g}",
                     "warmup": sched["warmup"],
                     "cooldown": "none" if cooldown is None else f"{cooldown} +{sched['cooldown_steps']}",
                     "endpoint": run["loss"]["endpoint"]["weight"], "train data": data_uri(run, "train")})
    return pd.DataFrame(rows).set_index("run")


def data_sizes(params):
    """(training scenes, validation scenes evaluated, passes over each training scene) of a
    run: the synthetic dataset's sizes (at `full`, base.yaml's sizes mirror the real splits')."""
    syn = params["data"]["synthetic"]
    val = syn["val"] if params["eval"]["max_scenes"] is None else min(syn["val"], params["eval"]["max_scenes"])
    return syn["train"], val, round(claims.passes(params, syn["train"]), 1)


def departures(params, path):
    """Where `params` (a profile's run of the params file `path`) departs from the seed's
    recipe (the same file at `full`): every params key whose value differs, ours beside the
    seed's (the scaled steps, LRs, points and batch too), the data's sizes and the passes
    over each training scene that follow, and, when the run trains on synthetic data, the
    world it was made in (the seed trained on the real data); empty at `full`. Every stage
    page shows it, so nothing a profile changes is silent."""
    full = load_params(path, "full")
    ours, baseline = (checkpoint.flatten(p) for p in (params, full))
    rows = [{"key": key, "this profile": ours.get(key), "seed's recipe": baseline.get(key)}
            for key in sorted(ours.keys() | baseline.keys()) if key != "profile" and ours.get(key) != baseline.get(key)]
    rows += [{"key": key, "this profile": a, "seed's recipe": b}
             for key, a, b in zip(("training scenes", "validation scenes evaluated", "passes per training scene"),
                                  data_sizes(params), data_sizes(full)) if a != b]
    if trains_on_synthetic(params):
        rows += [{"key": key, "this profile": value, "seed's recipe": "real data"}
                 for key, value in sorted(ours.items()) if key.startswith("data.synthetic.world.")]
    return pd.DataFrame(rows, columns=["key", "this profile", "seed's recipe"]).drop_duplicates("key").set_index("key")


def train_stage(params, runs="runs", device=None, init=None):
    """Train every run of a stage unless current (`train.run_stage`, retraining a stale run).

    Returns the final checkpoints (in `stage_runs` order) and the labels (`run_label`) of the runs
    trained now, so a page that only reads its runs can say when it had to train one.
    """
    start = time.time()
    finals = run_stage(params, runs, device, init=init, restart=True, progress=False)
    return finals, [run_label(params, run) for (run, _), path in zip(stage_runs(params, runs), finals)
                    if path.stat().st_mtime >= start]


def run_metrics(params, runs="runs"):
    """{run_label: metrics rows} of each run of a stage; a run not trained yet is left out."""
    out = {}
    for run, run_dir in stage_runs(params, runs):
        log = run_dir / "metrics.jsonl"
        if log.is_file():
            out[run_label(params, run)] = MetricsLog.read(log)
    return out


def summary(rows, params):
    """A run's headline numbers: the last evaluation's HSS, F1, IoU and train/val loss ratio,
    its final global step, and its minutes of training (the training loop's time read from
    the log's throughput, evaluations not counted)."""
    last = [r for r in rows if r["kind"] == "eval"][-1]
    step, seconds = params["schedule"]["start_step"], 0.0
    for row in (r for r in rows if r["kind"] == "train"):
        seconds += (row["step"] - step) * params["train"]["batch_size"] / row["samples_per_s"]
        step = row["step"]
    return {"hss": last["hss"], "f1": last["f1"], "iou": last["iou"], "ratio": last["ratio"],
            "steps": last["step"], "minutes": seconds / 60}


def arm_numbers(params, runs="runs"):
    """{arm: DataFrame of `summary` per seed (rows) with its mean and standard deviation} of
    each arm of a stage (the stage, or each LR of its sweep), from the runs' logs."""
    logs = run_metrics(params, runs)
    tables = {}
    for run, _ in stage_runs(params, runs):
        label = run_label(params, run)
        if label in logs:
            tables.setdefault(claims.arm_of(params, run), {})[run["train"]["seed"]] = summary(logs[label], run)
    return {arm: pd.DataFrame(rows).T.rename_axis("seed") for arm, rows in tables.items()}


def what_changed(recipe):
    """What a stage changes from the one it starts from, in words read from its params."""
    start = f"from {recipe['init_from']}" if recipe["init_from"] else "from scratch"
    endpoint = ", endpoint loss" if recipe["loss"]["endpoint"]["weight"] > 0 else ""
    cooldown = ", cooldown" if recipe["schedule"]["cooldown_start"] is not None else ""
    return f"{recipe['data']['points']} points {start}, lr {recipe['schedule']['lr']:g}{cooldown}{endpoint}"


def key_numbers(recipes, numbers, baseline):
    """The seed's "Key Numbers" table from our runs: per stage the mean (and standard deviation)
    over its seeds of the last evaluation (`arm_numbers`), beside the seed's figures."""
    rows = []
    for name in ("stage1", "stage2", "stage3"):
        table, theirs = numbers[name][name], baseline["stages"][name]
        rows.append({"stage": name, "seeds": len(table), "steps": recipes[name]["schedule"]["end_step"],
                     "HSS": table["hss"].mean(), "HSS sd": table["hss"].std(), "F1": table["f1"].mean(),
                     "IoU": table["iou"].mean(), "what changed": what_changed(recipes[name]),
                     "seed steps": theirs["step"], "seed HSS": theirs["hss"], "seed F1": theirs["f1"],
                     "seed IoU": theirs["iou"]})
    return pd.DataFrame(rows).set_index("stage").style.format(precision=3, na_rep="—")


def how_runs_ran(params, runs="runs"):
    """One row per run of a stage: how it computed (`inference.how_it_ran`, logged at its start)."""
    rows = {label: next((r for r in log if r["kind"] == "run"), {}) for label, log in run_metrics(params, runs).items()}
    return pd.DataFrame({label: {k: v for k, v in row.items() if k not in ("step", "kind")}
                         for label, row in rows.items()}).T


def first_losses(params, steps=4):
    """One line per run, '<run>: loss at init 0.1234 (its terms), after N steps 0.123': the
    stage notebooks' regression check.

    Each run's model is built from `train.seed` (the first seed's runs only) and takes `steps`
    updates of the trainer's step (`loop.train_step`) at the run's LR (`schedule.lr`) on its
    first training batch (its point count, augmentation and loss terms), in eval mode so that
    no dropout draw enters. These numbers follow the library's
    code and the params (the Sinkhorn's eps moves them in the second decimal) but hardly the
    CPU's kernels, where the end of a trained trajectory (and stage 2 starts from the end of
    stage 1's) does: between ATEN_CPU_CAPABILITY=default and avx2 the loss at init differs
    by 3e-8 and after 4 steps by up to 1.3e-6, after 5 by 4e-5 and after 8 by 1.5e-3 (Adam
    amplifies rounding). Hence 4 steps, printed to 3 decimals. At init every residual branch
    is zero, so the points reach the loss only from the third update on.
    """
    lines, cpu = [], torch.device("cpu")
    for run, _ in stage_runs(params, "."):
        if run["train"]["seed"] != params["train"]["seed"]:
            continue
        model, criterion, optimizer = build(run)
        model.eval()
        scenes = first(open_dataset(data_uri(run, "train")), run["train"]["batch_size"])
        items = SceneDataset(scenes, run["data"]["points"], run["data"]["augment"], run["train"]["seed"])
        batch = collate([items[i] for i in range(len(items))])
        step = forward_loss(model, criterion, run, cpu)
        at_init = train_step(step, optimizer, batch)
        for _ in range(steps - 1):
            train_step(step, optimizer, batch)
        with torch.no_grad(), autocast(run, cpu):
            after = criterion(model(batch), batch)["total"]
        parts = ", ".join(f"{k} {v.item():.4f}" for k, v in at_init.items() if k != "total")
        lines.append(f"{run_label(params, run)}: loss at init {at_init['total'].item():.4f} ({parts}), "
                     f"after {steps} steps {after.item():.3f}")
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
    frames, scores, _ = score_model(model, scenes, params, device)
    return scenes, frames, scores


def scores_by_threshold(path, thresholds, device=None, n=None):
    """(a table of mean HSS / F1 / IoU at each confidence threshold, every query's confidence)
    of a checkpoint on the first `n` (default `eval.max_scenes`) validation scenes: how much
    the scores owe to `eval.conf_threshold`, and whether any confidence reaches it."""
    model, params, device, scenes = _with_val_scenes(path, device, n)
    segments, conf, _ = predict_segments(model, scenes, params, device)
    return threshold_sweep(scenes, segments, conf, params, thresholds), conf


def threshold_sweep(scenes, segments, conf, params, thresholds):
    """A table of the mean HSS / F1 / IoU of predictions at each confidence threshold. A scene
    keeps the same queries at most thresholds, so each scene is scored once per set of kept
    queries."""
    scored = {}  # (scene, queries kept) -> Score
    rows = []
    for threshold in thresholds:
        keys = [(i, kept_queries(c, threshold).tobytes()) for i, c in enumerate(conf)]
        new = [i for i, key in enumerate(keys) if key not in scored]
        if new:
            at = {**params, "eval": {**params["eval"], "conf_threshold": threshold}}
            scores = score_predictions([scenes[i] for i in new], segments[new], conf[new], at)[1].scenes
            scored.update((keys[i], score) for i, score in zip(new, scores))
        mean = mean_score([scored[key] for key in keys])
        rows.append({"threshold": threshold, "hss": mean.hss, "f1": mean.f1, "iou": mean.iou})
    return pd.DataFrame(rows).set_index("threshold")


def nearest_query(segments, gt):
    """(distance [G], index [G]): for each GT segment of `gt` [G,2,3], the query of `segments`
    [Q,2,3] nearest to it at its farther end, taking the better of the two ways to pair the
    endpoints, and that distance (in the units of the inputs)."""
    d = np.linalg.norm(segments[:, None, :, None] - gt[None, :, None], axis=-1)  # [Q,G,2 query ends,2 GT ends]
    farther = np.minimum(np.maximum(d[..., 0, 0], d[..., 1, 1]), np.maximum(d[..., 0, 1], d[..., 1, 0]))
    index = farther.argmin(0)
    return farther[index, np.arange(len(gt))], index


def nearest_errors(path, device=None, n=None):
    """(metres, confidences): for each GT segment of the first `n` (default `eval.max_scenes`)
    validation scenes, how far the nearest query is from it (`nearest_query`), and that
    query's confidence. The metric counts a vertex only within `eval.vert_thresh` metres, so
    this says how far a model is from scoring, whatever its confidences."""
    model, params, device, scenes = _with_val_scenes(path, device, n)
    segments, conf, _ = predict_segments(model, scenes, params, device)
    metres, confidences = [], []
    for scene, pred, c in zip(scenes, segments, conf):
        distance, index = nearest_query(pred, np.asarray(scene["gt_segments"], np.float64).reshape(-1, 2, 3))
        metres.append(distance * float(scene["scale"]))
        confidences.append(c[index])
    return np.concatenate(metres), np.concatenate(confidences)


def saved_runs(folder):
    """The JSON files a benchmark script saved in `folder`, read, in the order of their names."""
    return [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.json"))]


def learning_speed_table(folder="benchmarks/results/learning_speed"):
    """The runs of `benchmarks/learning_speed.py` saved in `folder`, one row each: what it
    tried, and its figures at its last step on the scenes it fitted (their transport term
    is saved as `sinkhorn`, its name when they ran)."""
    rows = []
    for run in saved_runs(folder):
        last = run["rows"][-1]
        rows.append({"run": run["label"], "world": run["world"], "scenes": run["scenes"], "steps": last["step"],
                     "HSS@0.7": last["hss"], "HSS@0.3": last["hss_low"], "highest confidence": last["max_conf"],
                     "GT mass in dustbin": last["gt_dustbin"], "best mass per GT": last["best_mass"],
                     "transport term": last["sinkhorn"], "reached HSS 0.8 at step": run["steps_to_target"]})
    return pd.DataFrame(rows).astype({"reached HSS 0.8 at step": "Int64"}).set_index("run")


def loss_choice_table(folder="benchmarks/results/loss_choice"):
    """The runs of `benchmarks/loss_choice.py` saved in `folder`, one row each: the loss tried,
    each stage's last validation HSS and F1, and whether it learns by the script's rule."""
    rows = []
    for run in saved_runs(folder):
        row = {"loss": run["label"]}
        for stage, record in run["stages"].items():
            last = record["eval"][-1]
            row.update({f"{stage} HSS": last["hss"], f"{stage} F1": last["f1"]})
        rows.append({**row, "learns": run["learns"]})
    return pd.DataFrame(rows).set_index("loss")


GENERALISATION_COLUMNS = ("HSS@0.7", "F1@0.7", "HSS@0.3", "median midpoint m", "median angle deg",
                          "median length m", "median endpoint m", "endpoints within thresh")


def generalisation_table(folder="benchmarks/results/generalisation"):
    """The runs of `benchmarks/generalisation.py` saved in `folder`, one row each: what the
    stage-1 variant tried, its steps, and its figures on the validation scenes."""
    rows = [{"run": run["label"], "steps": run["steps"], **{k: run[k] for k in GENERALISATION_COLUMNS}}
            for run in saved_runs(folder)]
    return pd.DataFrame(rows).sort_values("HSS@0.7").set_index("run")


BASELINE_RESULTS = "params/baseline_results.yaml"


def baseline_results(path=BASELINE_RESULTS):
    """The seed's reported figures (params/baseline_results.yaml)."""
    return yaml.safe_load(open(path))


def verdicts(recipes, runs, profile, device=None):
    """The Results chapter's verdicts: every claim ruled on the runs' logs and their final
    checkpoints scored at the other point count (`claims`, `point_counts`). Glued: `verdict_<n>`
    and `verdict_<key>` (a claim's and a sub-claim's label), `verdict_<n>_evidence` (every part's
    figures, in full), `results_verdicts` (one row per sub-claim; `results_verdicts_summary` its
    columns for the intro), `results_point_counts` (the
    table at both point counts), `results_claim_differences` (the figure), `results_gain_split`
    (each attributed gain split by cause, per seed) and `results_finetune` (the finetune arms'
    evaluations, mean ± sd over seeds). Returns the table, the point-count table and the figure."""
    rules = claims.rules()
    evidence = claims.gather(recipes, runs)
    evidence.update(point_counts.rescore(recipes, runs, device))
    rows, parts, splits = {}, {}, {}
    for claim in claims.claims(recipes, baseline_results(), evidence, rules):
        label, results, met, reason = claims.rule(claim, evidence, rules)
        causes, share = claims.gain_split(results)
        if causes:
            splits[f"claim {claim.number}: {claim.parts[0].metric} gain"] = (causes, share)
        decisive = "; ".join(
            claims.describe(r, rules["share"]) + f" ({claims.differs(recipes, r)})"
            for r in results if r["decides"])
        beside = "; ".join(claims.describe(r) for r in results if not r["decides"])
        text = (decisive + (f". Beside it: {beside}" if beside else "")
                + ("" if met else f". Not testable here: {reason}"))
        for r in results:
            if r["decides"]:
                rows[r["key"]] = claims.row(r, rules, met, reason)
                glue(f"verdict_{r['key']}", r["label"], display=False)
        parts.update({f"{r['key'] or claim.number}: {r['part']} ({r['metric']})": r for r in results})
        glue(f"verdict_{claim.number}", label, display=False)
        glue(f"verdict_{claim.number}_evidence", text, display=False)
    label, fives = claims.reproducibility(Path(runs) / profile / "reproducibility.json")
    for key, (words, what, found, text) in fives.items():
        rows[key] = {"the seed's words": words, "what we tested": what, "effect [95% interval]": "—",
                     "share [95% interval]": "—", "outcome": text, "label": found, "seeds": "—",
                     "seeds its spread needs": "—", "what would decide it": "—"}
        glue(f"verdict_{key}", found, display=False)
    glue("verdict_5", label, display=False)
    glue("verdict_5_evidence", "; ".join(f"{key}: {text}" for key, (_, _, _, text) in fives.items()), display=False)
    table = pd.DataFrame(rows).T.rename_axis("sub-claim")
    styled = table.style.set_properties(**{"text-align": "left", "white-space": "normal"})
    glue("results_verdicts", styled, display=False)
    summary = table[["the seed's words", "effect [95% interval]", "share [95% interval]", "label", "seeds",
                     "what would decide it"]]
    glue("results_verdicts_summary", summary.style.set_properties(**{"text-align": "left", "white-space": "normal"}),
         display=False)
    both = point_counts.table(recipes, evidence, baseline_results()).style.format(precision=3, na_rep="—")
    glue("results_point_counts", both, display=False)
    figure = figures.claim_differences(parts)
    glue("results_claim_differences", figure, display=False)
    finetune = {arm: evidence[arm] for arm in ("stage2", "control_points", *claims.high_lr_arms(recipes)) if arm in evidence}
    for name, shown in (("results_gain_split", figures.gain_split(splits)),
                        ("results_finetune", figures.finetune_band(finetune, recipes["stage2"]["schedule"]["start_step"]))):
        glue(name, shown, display=False)
        plt.close(shown)  # the book shows it; the notebook shows the claims figure alone
    plt.close(figure)  # shown where the notebook displays it
    return styled, both, figure


class StageReport:
    """The sections of a training notebook, in page order. Arguments are the notebook's
    parameters (see any stage notebook's parameters cell)."""

    def __init__(self, params, profile, data=None, runs="runs", init=None, device=None, seed=None):
        self.path, self.profile, self.data, self.runs = params, profile, data, runs
        self.init, self.device, self.seed = init, device, seed
        self.recipe = notebook_params(params, profile, data, seed)
        self.stage = self.recipe["stage"]
        self.baseline_figures = baseline_results()
        self.finals, self.shown = None, None
        glue("profile", profile, display=False)
        glue(f"{self.stage}_points", self.recipe["data"]["points"], display=False)
        glue(f"{self.stage}_runs", len(stage_runs(self.recipe, runs)), display=False)

    def recipe_table(self):
        """The keys that tell the stages apart (`recipe_table`), as text."""
        return recipe_table(self.recipe).to_string()

    def departures(self):
        """Where this profile departs from the seed's recipe beyond the scaling, as text."""
        changes = departures(self.recipe, self.path)
        return changes.to_string() if len(changes) else "none: the seed's recipe"

    def train(self):
        """Train the stage unless current (`train_stage`); say which."""
        self.finals, trained = train_stage(self.recipe, self.runs, self.device, self.init)
        return "trained now" if trained else "cached: nothing to train"

    def checkpoints(self):
        """The checkpoints each run wrote, one line per run."""
        return "\n".join(f"{run_label(self.recipe, run)}: " + " ".join(sorted(p.name for p in final.parent.glob("step*.pt")))
                          for (run, _), final in zip(stage_runs(self.recipe, self.runs), self.finals))

    def how_it_ran(self):
        """How each run computed (precision, device, CPU kernels, torch version, threads)."""
        return how_runs_ran(self.recipe, self.runs)

    def first_losses(self):
        """The regression check from a fixed init (`first_losses`)."""
        return first_losses(self.recipe)

    def metrics(self):
        """{run: metrics rows} of the upstream stages and this one, on one step axis."""
        if self.shown is None:
            self.shown = {}
            for name in upstream_stages(self.path):
                upstream = notebook_params(Path(self.path).parent / f"{name}.yaml", self.profile, self.data, self.seed)
                self.shown.update(run_metrics(upstream, self.runs))
            self.shown.update(run_metrics(self.recipe, self.runs))
        return self.shown

    def curves(self, keys, name, kind="eval", references=None):
        """The figure of `keys` against the global step (`figures.curves`), glued as
        `<stage>_<name>`; the notebook shows it as it shows any figure it made."""
        fig = figures.curves(self.metrics(), keys, kind=kind, references=references)
        glue(f"{self.stage}_{name}", fig, display=False)

    def predictions(self, checkpoints=None, n=3, cols=3):
        """Predicted wireframes over the GT on `n` validation scenes for each checkpoint
        ({label: path}; default the final one), glued as `<stage>_wireframes`."""
        checkpoints = checkpoints or {None: self.finals[0]}
        scenes, frames, titles = [], [], []
        for label, path in checkpoints.items():
            some_scenes, some_frames, scores = evaluate_checkpoint(path, self.device, n=n)
            scenes += some_scenes
            frames += some_frames
            titles += [(f"{label}: " if label else "") + f"{s['order_id']}<br>HSS {r.hss:.2f}"
                       for s, r in zip(some_scenes, scores.scenes)]
        view = figures.offline(figures.wireframes(scenes, frames, titles, cols=cols))
        glue(f"{self.stage}_wireframes", view, display=False)
        return view

    def forgetting(self, stage1, stage2):
        """Claim 3 seed by seed (the book, Results): each finetune run (this sweep's and
        `stage2`'s, params) against the model it started from, stage 1's final checkpoint scored
        at the finetune's point count (`point_counts`); its lowest and last evaluation, the fall
        from the start to the last against Δ (params/verdicts.yaml), and whether any training
        loss of the run rose above the untrained model's (`claims.divergence`): divergence, which
        says nothing about forgetting. Glued as `<stage>_forgetting`, and the fewest evaluations
        a run of this stage made as `<stage>_evaluations`."""
        recipes = {r["stage"]: r for r in (stage1, stage2, self.recipe)}
        evidence = claims.gather(recipes, self.runs)
        dense = stage2["data"]["points"]
        starts = point_counts.rescore(recipes, self.runs, self.device, arms=(stage1["stage"],))
        starts = starts.get(claims.at_points(stage1["stage"], dense), {})
        smallest = claims.rules()["smallest_effect"]["hss"]
        rows = []
        for arm, by_seed in evidence.items():
            if arm == stage1["stage"]:
                continue
            for seed, log in sorted(by_seed.items()):
                if seed not in starts:
                    continue
                start, worst, last = claims.value(starts[seed], "hss"), claims.evaluation(log, "lowest hss"), claims.value(log, "hss")
                rows.append({"arm": arm, "seed": seed, f"start (stage 1 at {dense} points)": start,
                             "lowest HSS": worst["hss"], "at step": worst["step"],
                             "evaluations": len(claims.evals(log)), "final HSS": last,
                             "fall from the start": start - last, f"fall beyond Δ {smallest:g}": start - last > smallest,
                             "diverged": claims.divergence(log, evidence[stage1["stage"]][seed]) is not None})
        frame = pd.DataFrame(rows).set_index(["arm", "seed"])
        own = frame[frame.index.get_level_values("arm").str.startswith(self.stage)]
        glue(f"{self.stage}_evaluations", int(own["evaluations"].min()) if len(own) else 0, display=False)
        table = frame.style.format(precision=3)
        glue(f"{self.stage}_forgetting", table, display=False)
        return table

    def numbers(self, baseline_numbers, beside=None):
        """Each run's last-evaluation numbers (`summary`) and, per arm, their mean over the
        seeds, glued as `<stage>_<key>` (a sweep's arm as `<stage>_<LR as the params file
        writes it>_<key>`), beside the seed's (`baseline_numbers`, None where the seed reports
        none) and the arms of the stage params `beside` (not glued)."""
        as_written = {f"{lr:g}": written for lr, written in
                      zip(self.recipe["sweep_lr"] or [], notebook_params(self.path, "full")["sweep_lr"] or [])}
        columns = {}
        for recipe in [self.recipe] + ([beside] if beside else []):
            for arm, table in arm_numbers(recipe, self.runs).items():
                mean = table.mean()
                if recipe is self.recipe:
                    lr = arm.partition(" lr=")[2]
                    prefix = self.stage + (f"_{as_written[lr]:g}" if lr else "")
                    for key, value in mean.items():
                        glue(f"{prefix}_{key}", float(value), display=False)
                columns[f"{arm}: mean of {len(table)}"] = mean
                if len(table) > 1:
                    columns[f"{arm}: sd"] = table.std()
                    columns.update({f"{arm} seed={s}": row for s, row in table.iterrows()})
        columns["the seed's"] = pd.Series(baseline_numbers)
        return pd.DataFrame(columns).style.format(precision=3, na_rep="—")
