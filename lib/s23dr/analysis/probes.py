"""Probes of models: the stage pages' first-losses check from a fixed init; a trained
checkpoint scored on validation scenes (per scene, at each confidence threshold, and how
near its queries come to the GT); and the largest confidence target the loss can give."""

import numpy as np
import pandas as pd
import torch

from ..data import SceneDataset, collate, data_uri, open_dataset
from ..experiments import stage_runs
from ..inference import first, predict_segments, score_model, score_predictions
from ..loop import ForwardLoss, build, train_step
from ..matcher import matched_mass_at_cost
from ..metrics import mean_score
from ..postprocess import kept_queries
from ..predict import load_model


def first_losses(params, steps=4):
    """One line per run, '<run>: loss at init 0.1234 (its terms), after N steps 0.123': the
    stage notebooks' regression check.

    Each run's model is built from `train.seed` (the first seed's runs only) and takes `steps`
    updates of the trainer's step (`loop.train_step`) at the run's LR (`schedule.lr`) on its
    first training batch (its point count, augmentation and loss terms), in eval mode so that
    no dropout draw enters; "after" is that step's loss (`loop.ForwardLoss`) with no update.
    These numbers follow the library's code and the params (the Sinkhorn's eps moves them in
    the second decimal) but hardly the CPU's kernels, where the end of a trained trajectory
    (and stage 2 starts from the end of stage 1's) does: between ATEN_CPU_CAPABILITY=default and avx2 the loss at init differs
    by 3e-8 and after 4 steps by up to 1.3e-6, after 5 by 4e-5 and after 8 by 1.5e-3 (Adam
    amplifies rounding). Hence 4 steps, printed to 3 decimals. At init every residual branch
    is zero, so the points reach the loss only from the third update on.
    """
    lines, cpu = [], torch.device("cpu")
    for run in stage_runs(params, "."):
        if run.seed != params["train"]["seed"]:
            continue
        used = run.params
        model, criterion, optimizer = build(used)
        model.eval()
        scenes = first(open_dataset(data_uri(used, "train")), used["train"]["batch_size"])
        items = SceneDataset(scenes, used["data"]["points"], used["data"]["augment"], used["train"]["seed"])
        batch = collate([items[i] for i in range(len(items))])
        step = ForwardLoss(model, criterion, used, cpu)  # uncompiled: a compile would cost a page some 40 s
        at_init = train_step(step, optimizer, batch)
        for _ in range(steps - 1):
            train_step(step, optimizer, batch)
        with torch.no_grad():
            after = step(batch)["total"]
        parts = ", ".join(f"{k} {v.item():.4f}" for k, v in at_init.items() if k != "total")
        lines.append(f"{run.label}: loss at init {at_init['total'].item():.4f} ({parts}), "
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


def nearest_table(nearest, vert_thresh, conf_threshold):
    """Per run of `nearest` ({label: (metres, confidences)}, `nearest_errors`): the median
    distance of the nearest query to a GT segment, the share of GT segments it reaches
    within `vert_thresh`, and the share it reaches so and with a confidence that scores."""
    return pd.DataFrame({label: {"median distance (m)": np.median(metres),
                                 "share within threshold": np.mean(metres < vert_thresh),
                                 "share within and confident": np.mean((metres < vert_thresh) & (conf > conf_threshold))}
                         for label, (metres, conf) in nearest.items()}).T


def best_and_worst(scores, n=2):
    """[(index, "best" or "worst")]: the `n` scenes of `scores` (`metrics.Score`s) with the
    highest HSS, best first, then the `n` lowest, worst first, none twice (of two equal
    scores, the later scene counts as the better)."""
    order = np.argsort([s.hss for s in scores], kind="stable")
    best = [int(i) for i in order[::-1][:n]]
    return [(i, "best") for i in best] + [(int(i), "worst") for i in order[:n] if i not in best]


def confidence_ceiling(params, conf_threshold):
    """(the largest confidence target a query can get at each cost to its GT segment, every
    other query far away, the highest cost at which it still passes `conf_threshold`, 0 if
    none): the confidence target is the matched mass of the loss's Sinkhorn plan, of which
    the dustbin keeps a part set by eps and the dustbin cost (`matcher.matched_mass_at_cost`)."""
    ot, queries = params["loss"]["sinkhorn"], params["model"]["segments"]

    def mass(costs):
        return np.array(matched_mass_at_cost(costs, ot["eps"], ot["iters"], ot["dustbin"], queries))

    costs = np.round(np.arange(0, 0.41, 0.05), 2)
    ceiling = pd.Series(mass(costs), index=pd.Index(costs, name="cost of the query"), name="largest confidence target")
    fine = np.linspace(0, ot["dustbin"], 301)
    above = fine[mass(fine) > conf_threshold]
    return ceiling, float(above.max()) if len(above) else 0.0
