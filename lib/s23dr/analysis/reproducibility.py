"""The reproducibility page's checks (the book, Reproducibility): deterministic runs compared
tensor by tensor, a resumed run against an uninterrupted one, a forward pass loaded twice,
and training throughput beside the saved benchmark results.

The three checks run smoke-sized at every profile: what they check is the code path
(deterministic kernels, the RNG state in a checkpoint, the data order after a resume). The
baseline's own statements are then tested on a real stage of the profile (`stage_twice`).
"""

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch

from .. import bench, checkpoint, rundir
from ..config import load_params
from ..data import SceneDataset, collate, data_uri, open_dataset, to_device
from ..experiments import stage_runs
from ..inference import first
from ..loop import train, upstream_checkpoint
from ..model import output_tensors
from ..predict import load_model
from ..rundir import MetricsLog
from .evidence import evaluation

#: Steps before the resume point; the runs train twice as many.
HALF = 3


def smoke_params(path, end_step, seed=None):
    """The recipe of `path` at the smoke size, deterministic, checkpointing at HALF steps."""
    overrides = ["train.deterministic=true", f"schedule.end_step={end_step}", "seeds=1",
                 f"train.ckpt_every={HALF}", f"train.eval_every={2 * HALF}", "eval.max_scenes=2"]
    if seed is not None:
        overrides.append(f"train.seed={int(seed)}")
    return load_params(path, "smoke", overrides)


def tensors(path):
    """Every tensor of a checkpoint's model and AdamW state, by name."""
    state = checkpoint.load(path)
    model = {f"model.{k}": v for k, v in state["model"].items()}
    adam = {f"adam.{i}.{k}": v for i, moments in state["optimizer"]["state"].items() for k, v in moments.items()}
    return {**model, **adam}


def same(a, b):
    """How many of two equal-length lists of tensors are bit-identical, and the largest difference."""
    return {"tensors": len(a), "bit-identical": sum(torch.equal(x, y) for x, y in zip(a, b)),
            "max |diff|": max((x.double() - y.double()).abs().max().item() for x, y in zip(a, b))}


def compare(a, b):
    """`same` over the tensors of two checkpoints."""
    ta, tb = tensors(a), tensors(b)
    if ta.keys() != tb.keys():
        raise ValueError(f"{a} and {b} hold different tensors")
    return same([ta[k] for k in ta], [tb[k] for k in ta])


def checks(path, device=None, seed=None):
    """(table of the three checks, {check: "bit-identical" or "not bit-identical"}, device):
    two deterministic runs (A, B), a run stopped at HALF and resumed (C) against A, and
    one checkpoint loaded twice running the same batch."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    work = Path(tempfile.mkdtemp(prefix="s23dr-repro-"))
    try:
        run_a = train(smoke_params(path, 2 * HALF, seed), work / "a", device=device, progress=False)
        run_b = train(smoke_params(path, 2 * HALF, seed), work / "b", device=device, progress=False)
        train(smoke_params(path, HALF, seed), work / "c", device=device, progress=False)
        run_c = train(smoke_params(path, 2 * HALF, seed), work / "c", device=device, progress=False)
        (model_1, params), (model_2, _) = load_model(run_a, dev), load_model(run_a, dev)
        items = SceneDataset(first(open_dataset(data_uri(params, "val")), 4), params["data"]["points"])
        batch = to_device(collate([items[i] for i in range(len(items))]), dev)
        with torch.no_grad():
            forward = same(output_tensors(model_1(batch)), output_tensors(model_2(batch)))
        found = {"deterministic: A vs B": compare(run_a, run_b), "resume: A vs C (half + resume)": compare(run_a, run_c),
                 "forward pass: one checkpoint, two loads": forward}
    finally:
        shutil.rmtree(work)
    outcome = {name: "bit-identical" if row["bit-identical"] == row["tensors"] else "not bit-identical"
               for name, row in zip(("deterministic", "resume", "forward"), found.values())}
    return pd.DataFrame.from_dict(found, orient="index"), outcome, dev


def record(path, dev, outcome, table):
    """Write the outcome where the Results notebook reads claim 5 (`claims.reproducibility`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"device": str(dev), **outcome, "checks": table.to_dict(orient="index")}, indent=1))


#: The stage the baseline trained twice from one upstream checkpoint, which `stage_twice` trains again.
TWICE = "stage3"


def stage_twice(params, runs, within, device=None):
    """The baseline's two statements on a real stage of the profile, not a smoke run: the first
    run of `params` (stage 3, `TWICE`: the baseline trained it twice from one stage-2 checkpoint)
    trained once more from the same upstream checkpoint (`trained_twice`) and compared with the
    pipeline's run tensor by tensor (`compare`) and by final HSS, which the baseline's two such
    runs put `within` apart. Returns (the comparison row, {"stage": "bit-identical" or not,
    "stage_hss": both HSS, "within_hss": `within`, "within": whether they are})."""
    run = stage_runs(params, runs)[0]
    found = trained_twice(run, device)
    hss = found["hss"]
    outcome = {"stage": "bit-identical" if found["row"]["bit-identical"] == found["row"]["tensors"] else "not bit-identical",
               "stage_hss": hss, "within_hss": within, "within": abs(hss[0] - hss[1]) <= within}
    return {f"{run.label} trained twice": found["row"]}, outcome


def trained_twice(run, device=None):
    """{"row": `compare` of `run`'s final checkpoint with the same run trained again, "hss": the two
    final HSS}. The second training starts from the same upstream checkpoint, with the threads
    the first one's log records, in a temporary folder that is removed after.

    The result is kept beside the run's final checkpoint (`trained_twice.json`) while it is
    current (`rundir.is_current`: the same checkpoint, the same training code), so the pipeline
    trains it in a trainer process beside the other runs (`pipeline.prepare_runs`) and the
    Reproducibility page reads it."""
    final = checkpoint.path_for(run.dir, run.params["schedule"]["end_step"])

    def train_again():
        log = MetricsLog.read(run.dir / MetricsLog.FILE)
        work, before = Path(tempfile.mkdtemp(prefix="s23dr-twice-")), torch.get_num_threads()
        try:
            torch.set_num_threads(MetricsLog.run_row(log)["threads"])
            again = train(run.params, work / "again", init=upstream_checkpoint(run) if run.upstream else None,
                          device=device)
            return {"row": compare(final, again),
                    "hss": [evaluation(log, "hss")["hss"], evaluation(MetricsLog.read(work / "again" / MetricsLog.FILE), "hss")["hss"]]}
        finally:
            torch.set_num_threads(before)
            shutil.rmtree(work)

    inputs = {"checkpoint": rundir.stamp_of(final), "code": rundir.code_version("analysis.reproducibility")}
    return rundir.kept(run.dir / "trained_twice.json", inputs, train_again)


#: What benchmarks/gpu_check.py writes in benchmarks/results/: bench's rows of each variant
#: (compiled, eager), with the step's time split, among the check's other parts.
GPU_CHECK = "gpu_check.json"


def saved_rows(folder):
    """The throughput table's rows of the bench results saved in `folder` (`s23dr.bench --out`
    and the GPU check), and, while the GPU check's file is absent, a row that says so."""
    rows = []
    for f in sorted(Path(folder).glob("*.json")):
        saved = json.loads(f.read_text())
        if f.name == GPU_CHECK:  # a part that failed holds {"error": ...}, no rows
            saved = [r for v in saved["variants"] if isinstance(saved[f"bench_{v}"], list) for r in saved[f"bench_{v}"]]
        rows += [{"machine": r["device"], "profile": r["profile"], "stage": r["stage"], "points": r["points"],
                  "batch": r["batch_size"],
                  "setting": r["precision"] + (f", compiled ({r.get('compile_mode', 'default')})" if r["compile"] else ""),
                  "samples/s": r["samples_per_s"], "source": f"{folder}/{f.name}",
                  **({"step ms: data, forward, backward, AdamW": ", ".join(
                      f"{1e3 * r[k]:.1f}" for k in ("data_s", "forward_s", "backward_s", "optimizer_s"))}
                     if "forward_s" in r else {})} for r in saved]
    if not (Path(folder) / GPU_CHECK).is_file():
        rows.append({"machine": "a GPU", "profile": "full", "samples/s": "not measured: benchmarks/gpu_check.py has not run",
                     "source": f"{folder}/{GPU_CHECK}"})
    return rows


def throughput(recipes, dev, baseline, folder="benchmarks/results"):
    """Training samples/s of stage 1 and 2 (`recipes` {stage: params}) measured now on `dev`
    (`bench.measure`), beside the saved bench results in `folder` (`saved_rows`) and the baseline's figure."""
    torch.use_deterministic_algorithms(False)  # the checks switched it on; time the default
    machine, cuda, rows = bench.device_name(dev), dev.type == "cuda", []
    for name, run in recipes.items():
        speed = bench.measure(run, dev, steps=20 if cuda else 5, warmup=5 if cuda else 2)
        rows.append({"machine": machine, "profile": run["profile"], "stage": name, "points": run["data"]["points"],
                     "batch": run["train"]["batch_size"],
                     "setting": ("bf16" if cuda and run["train"]["bf16"] else "fp32")
                     + (", compiled" if run["train"]["compile"] else ""),
                     "samples/s": speed["samples_per_s"], "source": "measured now"})
    rows += saved_rows(folder)
    rows.append({"machine": "RTX 4090", "profile": "full", "stage": "stage1", "points": 2048, "batch": 32,
                 "setting": "compiled", "samples/s": baseline["stage1_samples_per_s_rtx4090"], "source": "the baseline"})
    return machine, pd.DataFrame(rows).astype({"points": "Int64", "batch": "Int64"})
