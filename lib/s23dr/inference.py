"""Inference: a model and scenes in; segments, wireframes in metres and scores out.

The trainer's evaluation, the predict command and the evaluate command all go through
these functions, so a validation HSS in the metrics log and one from the command line
are computed the same way.
"""

import contextlib
import multiprocessing
import multiprocessing.util
import os
from concurrent.futures import ProcessPoolExecutor

import torch

from .config import CHOICES
from .data import SceneDataset, collate, to_device
from .metrics import mean_score, score_scenes
from .postprocess import segments_to_wireframe

NO_AUGMENT = {"rotate": False, "flip": False}


def uses_bf16(params, device):
    """Whether a step on `device` runs under bf16 autocast. CUDA: `train.bf16`. CPU:
    `train.cpu_precision`, whose `auto` takes bf16 only where the CPU reports native bf16
    arithmetic (`cpu_has_native_bf16`); it never times anything, so two processes on one
    machine always choose alike."""
    if device.type == "cuda":
        return params["train"]["bf16"]
    precision = params["train"]["cpu_precision"]
    if precision not in CHOICES["train.cpu_precision"]:
        raise ValueError(f"train.cpu_precision must be one of {CHOICES['train.cpu_precision']}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and cpu_has_native_bf16())


def autocast(params, device):
    """bf16 autocast where `uses_bf16`, else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if uses_bf16(params, device) else contextlib.nullcontext()


def cpu_has_native_bf16():
    """Whether this CPU reports native bf16 instructions (AVX-512 BF16 or AMX), as torch reads
    its CPUID, and torch runs its AVX-512 kernels (ATEN_CPU_CAPABILITY can lower them, and the
    bf16 kernels then refuse the AMX path). Without them (AVX2 alone) bf16 is emulated and a
    bf16 matmul is ~25x slower than fp32; with them ~6x faster at large sizes, though not at
    the `cpu` profile's small matrices, which is why that profile sets fp32 (the book, Method)."""
    return (torch.backends.cpu.get_cpu_capability().startswith("AVX512")
            and bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()))


def outputs_and_losses(model, criterion, batch, device, bf16):
    """(the model's outputs of `batch`, their loss terms or None without `criterion`), the one
    place training (`loop.ForwardLoss`) and evaluation (`predict_batches`) run the model and
    its loss, so their losses agree: the forward under bf16 autocast where `bf16`
    (`uses_bf16`), reading the earlier decoder layers only where the loss does (loss.aux),
    then the loss terms in fp32."""
    with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        outputs = model(batch, layers=criterion is not None and criterion.aux.weight > 0)
    return outputs, criterion(outputs, batch) if criterion is not None else None


def how_it_ran(params, device):
    """How a run computes, for its log and the stage pages: precision, device, the CPU kernels
    torch dispatches to (ATEN_CPU_CAPABILITY may lower them), the torch version and threads."""
    return {"precision": "bf16" if uses_bf16(params, device) else "fp32", "device": str(device),
            "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "(unset)"),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def scene_batches(scenes, params, device):
    """`scenes` as inference reads them: batches of train.batch_size in order, without
    augmentation, on `device`, each made as it is read."""
    dataset = SceneDataset(scenes, params["data"]["points"], NO_AUGMENT, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=params["train"]["batch_size"], collate_fn=collate,
                                         pin_memory=device.type == "cuda", generator=torch.Generator())
    return (to_device(batch, device) for batch in loader)


def predict_segments(model, scenes, params, device, criterion=None):
    """Segments [N,Q,2,3] and confidences [N,Q] (probabilities; None for a model without
    confidence head, model.segment_conf false) for `scenes`, and the mean loss (`predict_batches`)."""
    return predict_batches(model, scene_batches(scenes, params, device), params, device, criterion)


@torch.no_grad()
def predict_batches(model, batches, params, device, criterion=None, first=None):
    """`predict_segments` of scenes already batched (`scene_batches`); with `first`, the loss is
    a pair: over every scene, and over the first `first` scenes where they end at a batch's end
    (else None: a batch's loss does not split into its scenes').

    Outputs and the loss sum stay on the device until the last batch, so the host queues
    batch after batch without waiting for one (on CUDA); the sum is float64, as a Python
    float sum of the batches' losses would be. The loss is the trainer's (`outputs_and_losses`)."""
    was_training = model.training
    model.eval()
    bf16 = uses_bf16(params, device)
    segments, conf, loss_sum, count = [], [], torch.zeros((), dtype=torch.float64, device=device), 0
    first_sum = None
    for batch in batches:
        out, losses = outputs_and_losses(model, criterion, batch, device, bf16)
        if criterion is not None:
            loss_sum += losses["total"].double() * len(batch["order_id"])
        count += len(batch["order_id"])
        if count == first:
            first_sum = loss_sum.clone()
        segments.append(out["segments"].float())
        if "conf_logits" in out:
            conf.append(torch.sigmoid(out["conf_logits"].float()))
    model.train(was_training)
    loss = loss_sum.item() / count if criterion is not None else None
    if first is not None:
        loss = (loss, first_sum.item() / first if criterion is not None and first_sum is not None else None)
    return torch.cat(segments).cpu().numpy(), torch.cat(conf).cpu().numpy() if conf else None, loss


def to_wireframes(scenes, segments, conf, params):
    """(vertices in metres, edges) per scene from the model's segments and confidences (None:
    every segment kept; the book, Method: post-processing).

    The scene's valid points go along so that vertices can snap to apex and eave-end points.
    """
    if conf is None:
        conf = [None] * len(segments)
    return [segments_to_wireframe(seg, c, scene["center"], scene["scale"],
                                  conf_threshold=params["eval"]["conf_threshold"],
                                  points=scene["xyz_norm"][scene["mask"]],
                                  point_classes=scene["class_id"][scene["mask"]],
                                  **params["postprocess"])
            for scene, seg, c in zip(scenes, segments, conf)]


def first(scenes, n):
    """The first `n` scenes (all of them for n=None), as a list."""
    return [scenes[i] for i in range(len(scenes) if n is None else min(n, len(scenes)))]


def score_predictions(scenes, segments, conf, params, pool=None):
    """(wireframes, official scores per scene and mean) of predicted segments and confidences.

    The scenes are scored in the processes of `pool` (a trainer's), else in this process's
    `scoring_pool` of as many processes as it may use CPUs: the edge IoU's mesh booleans cost
    some 0.01 CPU-second a scene at the `cpu` profile, 0.1 at `full`, most of an evaluation."""
    ev, workers = params["eval"], usable_cpus()
    frames = to_wireframes(scenes, segments, conf, params)
    scores = score_scenes(frames, [(s["gt_vertices"], s["gt_edges"]) for s in scenes],
                          vert_thresh=ev["vert_thresh"], edge_thresh=ev["edge_thresh"],
                          workers=workers, pool=pool or scoring_pool(workers))
    return frames, scores


#: This process's scoring pools, by their number of processes (`scoring_pool`).
_SCORING_POOLS = {}


def scoring_pool(workers):
    """`workers` processes to score scenes in while this process goes on, one pool for the
    process's whole life: a trainer process trains run after run, and a pool a run paid again,
    each run, its processes' start (importing the metric's libraries) and the metric's GT
    cache (`metrics._gt_cylinders`). Started by forkserver, not fork, because a fork copies the
    locks that this process's other threads (a trainer's) may hold at that moment, locked for
    good. The pool is shut down first among multiprocessing's exit finalizers: before it joins
    this process's children (a trainer process is itself such a child, and a pool left for a
    later exit hook kept it waiting for its scoring processes for good), and before the pool's
    own queue stops the thread that would send its processes their stop (priority 10)."""
    if workers not in _SCORING_POOLS:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
        multiprocessing.util.Finalize(None, pool.shutdown, exitpriority=100)
        _SCORING_POOLS[workers] = pool
    return _SCORING_POOLS[workers]


def usable_cpus():
    """The CPUs this process may run on (its affinity where the OS reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def score_model(model, scenes, params, device, criterion=None):
    """(wireframes, official scores per scene and mean, mean loss or None) of a model on `scenes`."""
    segments, conf, loss = predict_segments(model, scenes, params, device, criterion)
    return (*score_predictions(scenes, segments, conf, params), loss)


class Validation:
    """A run's evaluations, made ready once: the first `n` validation scenes (default
    `eval.max_scenes`; the final evaluation's are `eval.final_scenes`, `final_scenes`) and,
    with `train_scenes`, a fixed sample of as many training scenes, the first
    `eval.train_scenes` (the whole training split would cost an evaluation many times the
    validation's), decoded, fitted and batched at the start of the run and kept on `device`.
    An evaluation is then the model's forward passes alone: at `full` (1,024 + 1,024 scenes of
    4,096 points) reading and fitting its scenes again would cost the trainer's process some
    seconds at each evaluation. The validation scenes stay in memory too, for the scoring.

    `run(model, criterion, pool)` evaluates the model as it is now, in two parts: the call runs
    the model (the validation loss and segments); the function it returns scores them, CPU work
    that needs no model, so a trainer can run it in the background while it trains (in the
    processes of `pool`: `score_predictions`). That function returns the row: val loss, HSS /
    F1 / IoU (their means, and per validation scene as `scenes`: {order_id: [hss, f1, iou]},
    which the verdicts pair between runs), and with `train_scenes` the train/val loss ratio
    (val loss over train loss, both without dropout or augmentation: our reading of the seed's
    overfitting measure, the book, Results). With `first`, it returns a pair of rows: over
    every scene, and over the first `first` alone, the row a `Validation` of those scenes would
    make (the same batches, scored alike), without running the model on them twice.
    """

    def __init__(self, val_scenes, params, device, train_scenes=None, n=None):
        n = n or params["eval"]["max_scenes"]
        self.params, self.device = params, device
        self.scenes = first(val_scenes, n)
        self.val = list(scene_batches(self.scenes, params, device))
        self.train_scenes, self.train = None, None
        if train_scenes is not None:
            # The curves' cap (eval.max_scenes) holds for the final evaluation's larger split too:
            # no verdict reads its ratio but claim 1's, whose arms train on fewer scenes than that.
            sample = min(k for k in (n, params["eval"]["max_scenes"], params["eval"]["train_scenes"]) if k is not None)
            self.train_scenes = first(train_scenes, sample)
            self.train = list(scene_batches(self.train_scenes, params, device))

    def run(self, model, criterion, pool=None, first=None):
        params, device = self.params, self.device

        def losses(batches, scenes):
            """Their loss, and with `first` the loss of the first `first` of `scenes` too (from
            their own batches where those scenes end inside one: a batch's loss does not split)."""
            segments, conf, loss = predict_batches(model, batches, params, device, criterion,
                                                   None if first is None else min(first, len(scenes)))
            if first is None:
                return segments, conf, (loss,)
            if loss[1] is None and criterion is not None:
                loss = (loss[0], predict_segments(model, scenes[:first], params, device, criterion)[2])
            return segments, conf, loss

        segments, conf, val_loss = losses(self.val, self.scenes)
        train_loss = (None, None) if self.train is None else losses(self.train, self.train_scenes)[2]

        def row(scenes, scores, val, train):
            ratio = {} if train is None else {"train_loss": train, "ratio": val / max(train, 1e-12)}
            mean = mean_score(scores)
            return {"val_loss": val, "hss": mean.hss, "f1": mean.f1, "iou": mean.iou,
                    "scenes": {s["order_id"]: [r.hss, r.f1, r.iou] for s, r in zip(scenes, scores)}, **ratio}

        def scored():
            scores = score_predictions(self.scenes, segments, conf, params, pool)[1].scenes
            every = row(self.scenes, scores, val_loss[0], train_loss[0])
            return every if first is None else (every, row(self.scenes[:first], scores[:first], val_loss[1], train_loss[1]))
        return scored


def final_scenes(params):
    """How many validation scenes the final evaluation scores (`eval.final_scenes`, null: as
    many as every evaluation, `eval.max_scenes`): the one every verdict reads, on more scenes
    than the curves' evaluations where a larger split narrows the verdicts' intervals at little
    cost (the book, Results: how many seeds)."""
    return params["eval"]["final_scenes"] or params["eval"]["max_scenes"]
