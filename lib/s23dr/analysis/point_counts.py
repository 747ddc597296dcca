"""Final checkpoints scored at both point counts (the book, Results: "Both point counts"): the
seed's "HSS @ 2048" column rebuilt, which splits what denser input adds at inference from what
training on it adds, and the starting point of a finetune (stage 1's model scored at the
finetune's point count) that claim 3 measures forgetting from.

A run's own final evaluation is read from its log; only the other point count is scored here, on
the same first `eval.final_scenes` validation scenes of that point count's split.
"""

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import checkpoint, rundir
from ..data import data_uri, open_dataset
from ..experiments import main_chain, stage_runs
from ..inference import final_scenes, first, score_model
from ..predict import load_model
from .evidence import at_points, value

#: The arms scored at both point counts.
ARMS = ("stage1", "stage2", "stage3", "control_points")


def point_counts(recipes):
    """The profile's point counts, in the `main_chain`'s order (stage 1's and stage 2's), from
    the chain's stages among `recipes` ({stage: params})."""
    return tuple(dict.fromkeys(recipes[name]["data"]["points"] for name in main_chain() if name in recipes))


def rescore(recipes, runs, device=None, arms=ARMS):
    """{at_points(arm, n): {seed: [its evaluation row]}}: the final checkpoint of every run of
    `arms`'s stages scored at the point count it was not trained on (`at_other_points`)."""
    found, read = {}, {}  # read: the validation scenes by (split, count), decoded once for every run
    counts = point_counts(recipes)
    runs_of = [run for name in arms for run in stage_runs(recipes[name], runs)]
    for run in tqdm(runs_of, desc="scoring at the other point count"):
        row = at_other_points(run, counts, device, read)
        if row is not None:
            found.setdefault(at_points(run.stage, row["points"]), {})[run.seed] = [row]
    return found


def other_count(run, counts):
    """The one of the profile's point `counts` that `run` (a `Run`) did not train on."""
    return next(n for n in counts if n != run.params["data"]["points"])


def at_other_points(run, counts, device=None, read=None):
    """`run`'s final checkpoint scored at the point count of `counts` it was not trained on, on the
    first `eval.final_scenes` validation scenes of that count's split, as a final evaluation row
    (hss, f1, iou and per-scene scores); None while the run has no final checkpoint.

    The row is kept beside the checkpoint (`final_at_<N>_points.json`) and read from there while it
    is current (`rundir.is_current`: the same checkpoint, scored by the same code), so the
    pipeline scores it in a trainer process once the run is trained (`pipeline.prepare_runs`) and
    the pages that read it do not score it again. `read` caches decoded splits between calls."""
    final = checkpoint.path_for(run.dir, run.params["schedule"]["end_step"])
    if not final.is_file():
        return None
    other, cache = other_count(run, counts), {} if read is None else read

    def score():
        on = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, trained = load_model(final, on)
        at = {**trained, "data": {**trained["data"], "points": other}}
        split = (data_uri(at, "val"), final_scenes(at))
        if split not in cache:
            cache[split] = first(open_dataset(split[0]), split[1])
        scenes = cache[split]
        _, scores, _ = score_model(model, scenes, at, on)
        return {"kind": "final", "step": run.params["schedule"]["end_step"], "points": other, "hss": scores.mean.hss,
                "f1": scores.mean.f1, "iou": scores.mean.iou,
                "scenes": {str(s["order_id"]): [r.hss, r.f1, r.iou] for s, r in zip(scenes, scores.scenes)}}

    inputs = {"checkpoint": rundir.stamp_of(final), "code": rundir.code_version("analysis.point_counts"), "points": other}
    return rundir.kept(run.dir / f"final_at_{other}_points.json", inputs, score)


def table(recipes, evidence, baseline):
    """Mean HSS over seeds (± their sd) of each arm of `ARMS` at both point counts, our stage 1's
    count in the seed's 2048 column and stage 2's in its 4096, beside the seed's deterministic
    progression (params/baseline_results.yaml)."""
    sparse, dense = point_counts(recipes)
    rows = {}
    for arm in ARMS:
        row = {}
        for n, seeds_name in ((dense, "4096"), (sparse, "2048")):
            own = recipes[arm]["data"]["points"] == n
            by_seed = evidence.get(arm if own else at_points(arm, n), {})
            values = pd.Series({s: value(log, "hss") for s, log in by_seed.items()}, dtype=float)
            row[f"ours at {n} points"] = values.mean()
            row[f"ours at {n}: sd"] = values.std()
        seed = baseline["deterministic_progression"].get(arm, {})
        row["seed's at 4096"], row["seed's at 2048"] = seed.get("hss_4096"), seed.get("hss_2048")
        rows[arm] = row
    return pd.DataFrame(rows).T
