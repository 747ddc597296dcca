"""What a verdict reads from the runs (the book, Results: the verdicts): each arm's metrics logs
by training seed (`gather`: `{arm: {seed: rows}}`, the *evidence*), the evaluation a metric
reads from a log (`value`: the final one, or the best), the per-seed difference of two arms
(`per_seed`), and what tells two arms' recipes apart (`changed_keys`).

An arm is a stage, or `<stage> lr=<LR>` for one rate of a sweep (`experiments.Run.arm`); a stage's final
checkpoints scored at the other point count are the arm `at_points(stage, points)`
(`point_counts`).
"""

from .. import checkpoint
from ..config import load_params
from ..experiments import stage_files, stage_runs
from ..rundir import MetricsLog

#: The score columns of an evaluation's per-scene scores (`inference.Validation`).
SCENE_SCORES = ("hss", "f1", "iou")
#: Keys that name or place a run rather than change what it trains.
NOT_RECIPE = ("stage", "init_from", "profile", "sweep_lr", "seeds", "train.seed")


def gather(recipes, runs):
    """{arm: {seed: metrics rows}} of every run of `recipes` ({stage: params}) found under `runs`."""
    found = {}
    for params in recipes.values():
        for run in stage_runs(params, runs):
            log = run.dir / MetricsLog.FILE
            if log.is_file():
                found.setdefault(run.arm, {})[run.seed] = MetricsLog.read(log)
    return found


def evaluation(rows, metric):
    """The evaluation row a metric reads: the final one (`MetricsLog.final`, on `eval.final_scenes`),
    or the best / worst by HSS of the evaluations along the run."""
    if metric == "peak hss":
        return max(MetricsLog.evals(rows), key=lambda r: r["hss"])
    if metric == "lowest hss":
        return min(MetricsLog.evals(rows), key=lambda r: r["hss"])
    return MetricsLog.final(rows)


def value(rows, metric):
    return evaluation(rows, metric)[metric.split()[-1]]


def changed_keys(a, b):
    """The recipe keys in which params `a` and `b` differ (names and seeds left out)."""
    return checkpoint.differences(a, b, NOT_RECIPE)


def per_seed(evidence, a, b, metrics):
    """{seed: metric_a(a) - metric_b(b)} over the seeds both arms ran."""
    runs_a, runs_b = evidence.get(a, {}), evidence.get(b, {})
    return {s: value(runs_a[s], metrics[0]) - value(runs_b[s], metrics[1]) for s in sorted(runs_a.keys() & runs_b.keys())}


def at_points(arm, points):
    """The evidence name of `arm`'s final checkpoints scored at `points` points (`point_counts`)."""
    return f"{arm} at {points} points"


def arm_params(recipes, arm):
    """The params of the first run of `arm` (a `Run.arm`: a stage, or one LR of a sweep)."""
    return next(run.params for params in recipes.values() if params["sweep_lr"] or params["stage"] == arm
                for run in stage_runs(params, ".") if run.arm == arm)


def seed_passes():
    """How many times the seed's stage 1 saw each training scene: its steps times its batch over
    the real training split's size (params at `full`; base.yaml data.synthetic.train mirrors it)."""
    full = load_params(stage_files()["stage1"])
    return passes(full, full["data"]["synthetic"]["train"])


def passes(params, train_scenes):
    """How many times a run of `params` sees each of its `train_scenes` training scenes."""
    sched = params["schedule"]
    return (sched["end_step"] - sched["start_step"]) * params["train"]["batch_size"] / train_scenes


def passes_per_scene(evidence, arm, params):
    """`passes` of a run of `arm`, over the training scenes its log says it read."""
    runs = [r for rows in evidence.get(arm, {}).values() for r in rows if r["kind"] == "run"]
    return passes(params, runs[0]["train_scenes"]) if runs else float("nan")
