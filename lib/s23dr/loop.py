"""One training loop for every stage: params in, checkpoints and a metrics log out.

The loop counts a global step that continues across stages (stage 2 starts at
stage 1's last step), so the LR schedule, the checkpoint names and the metrics of all
stages share one axis. The data order and the augmentation are functions of
(seed, stage-local step), and the checkpoint holds the RNG states, so an interrupted
run resumes exactly where it stopped.
"""

import contextlib
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from . import checkpoint, rundir
from .data import SceneDataset, collate, data_uri, open_split, to_device
from .inference import Validation, final_scenes, how_it_ran, outputs_and_losses, scoring_pool, usable_cpus, uses_bf16
from .losses import Criterion
from .memory import keep_freed_memory
from .model import Perceiver, param_groups


#: A stop asked for (`train`'s SIGTERM and Ctrl-C handler sets it) while `STOPPABLE`, a
#: one-process loop running: the loop ends the step it makes, saves a checkpoint there and
#: stops with KeyboardInterrupt, so no step is lost and the model is never saved mid-update.
STOP, STOPPABLE = threading.Event(), threading.Event()


def lr_at(step, schedule):
    """LR of the update that produces global step `step` (1-based): warmup, constant, cooldown."""
    lr = schedule["lr"]
    if schedule["warmup"] and step < schedule["warmup"]:
        lr *= step / schedule["warmup"]
    start = schedule["cooldown_start"]
    if start is not None and step > start:
        lr *= max(0.0, 1.0 - (step - start) / schedule["cooldown_steps"])
    return lr


class EpochBatches(torch.utils.data.Sampler):
    """Batches of one epoch in a (seed, epoch) permutation, from batch `start` on.

    Each of `world` ranks takes its own slice of every global batch, so the global
    batches, and so the training, do not depend on the number of processes.
    """

    def __init__(self, n, batch_size, seed, epoch, start=0, rank=0, world=1):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        per_rank = batch_size // world
        self.batches = [order[b * batch_size:(b + 1) * batch_size][rank * per_rank:(rank + 1) * per_rank].tolist()
                        for b in range(start, n // batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def batches(dataset, params, device, local_step=0, rank=0, world=1):
    """This rank's share of the global batches of `dataset` (a SceneDataset) from stage-local
    step `local_step` on, epoch after epoch (EpochBatches), from one loader for the whole run:
    its workers (data.num_workers) start once, not every epoch, and prefetch across an epoch's
    end. Items are indexed by (epoch, index), so they do not depend on which worker makes
    them. The generator feeds only the workers' seeds, which no item reads: it keeps the
    loader from drawing on the global RNG (dropout's)."""
    cfg = params["train"]
    steps_per_epoch = len(dataset) // cfg["batch_size"]

    def order():
        epoch, start = divmod(local_step, steps_per_epoch)
        while True:
            for batch in EpochBatches(len(dataset), cfg["batch_size"], cfg["seed"], epoch, start, rank, world):
                yield [(epoch, i) for i in batch]
            epoch, start = epoch + 1, 0

    return iter(torch.utils.data.DataLoader(
        dataset, batch_sampler=order(), collate_fn=collate, num_workers=params["data"]["num_workers"],
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(cfg["seed"])))


def make_optimizer(model, params):
    """AdamW as every stage trains with it: params optim, the confidence head's own weight
    decay among them (optim.head_wd; `param_groups`), and the stage's LR (schedule.lr). The
    fused kernel, on the CPU too: there it takes a quarter of the per-tensor loop's time; on
    CUDA a few launches a step, left outside the step's CUDA graph (the book, Reproducibility)."""
    optim = params["optim"]
    return torch.optim.AdamW(
        param_groups(model, optim["weight_decay"], optim["head_wd"]),
        lr=params["schedule"]["lr"], betas=tuple(optim["betas"]), fused=True)


def build(params, device="cpu"):
    """(model, criterion, optimizer) as every training and measurement of a step starts them
    from params: the model drawn from `train.seed`, the loss, AdamW (`make_optimizer`)."""
    torch.manual_seed(params["train"]["seed"])
    model = Perceiver(**params["model"]).to(device)
    return model, Criterion(**params["loss"]), make_optimizer(model, params)


class ForwardLoss(torch.nn.Module):
    """A training step's forward and loss as one module, so `torch.compile` makes one graph of
    both (CUDA graphs hold the loss too under reduce-overhead) and DDP wraps both: the model's
    forward and the loss terms as evaluation computes them too (`inference.outputs_and_losses`).
    The precision is decided here, once (`inference.uses_bf16`): dynamo cannot trace the CPU's
    bf16 query, and a graph break inside the autocast made a compiled CPU step recompile at
    every step."""

    def __init__(self, model, criterion, params, device):
        super().__init__()
        self.model, self.criterion, self.device = model, criterion, device
        self.bf16 = uses_bf16(params, device)

    def forward(self, batch):
        return outputs_and_losses(self.model, self.criterion, batch, self.device, self.bf16)[1]


def forward_loss(model, criterion, params, device, world=1):
    """`ForwardLoss` as the trainer runs it: `torch.compile`d in `train.compile_mode` when
    `train.compile` asks for it (never in deterministic mode), then, across `world` processes,
    in DDP for a static graph (the Fourier buffer is constant, every parameter is used every
    step; the docs' order: compile the inner module, then wrap it). Static shapes: a process
    that trains several runs (`pipeline.prepare_runs`) reuses the graph of each shape it
    compiled, and a second shape gets its own graph, not a dynamic-shape one for both."""
    forward = ForwardLoss(model, criterion, params, device)
    cfg = params["train"]
    if cfg["compile"] and not cfg["deterministic"]:
        if device.type == "cpu":
            check_cpu_compiler()
        forward.compile(mode=cfg["compile_mode"], dynamic=False)
    if world > 1:
        forward = torch.nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False,
            static_graph=True, gradient_as_bucket_view=True, batched_grad_copy=True)
    return forward


def check_cpu_compiler():
    """On a CPU, inductor builds the compiled step with a C++ compiler: without one, a one-line
    error now rather than a traceback at the first step."""
    from torch._inductor.cpp_builder import get_cpp_compiler
    try:
        get_cpp_compiler()
    except Exception as error:  # inductor's own error types vary with its version
        raise RuntimeError(f"train.compile=true on the CPU needs a C++ compiler (g++, or one named by $CXX), "
                           f"and none was found ({type(error).__name__}); install one or set train.compile=false") from None


def separate_compile_caches():
    """One inductor cache per CPU kernel class (`torch.backends.cpu.get_cpu_capability`), for
    the compiled steps of this process and those it starts (the trainer's command line and the
    pipeline call it first): torch 2.13 served a step compiled under the AVX-512 kernels from
    its cache to a process under ATEN_CPU_CAPABILITY=avx2, whose first step then failed
    ("tuple args required"). A cache the user chose (TORCHINDUCTOR_CACHE_DIR) is kept."""
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:  # read before importing inductor, which sets it
        return
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    folder = Path(default_cache_dir()) / torch.backends.cpu.get_cpu_capability().lower()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)


def train_step(forward, optimizer, batch, lr=None):
    """One update as the trainer makes it, at `lr` when given: the loss terms of `batch` from
    `forward` (a `ForwardLoss`, as `forward_loss` makes it), backward, AdamW. Returns the terms
    before the update (tensors, not yet read)."""
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    losses = forward(batch)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimizer.step()
    return losses


def scoring_workers(params):
    """The processes that score a trainer's evaluations: one a CPU that the loader's workers
    (data.num_workers) and the trainer's own process leave, at least one."""
    return max(1, usable_cpus() - params["data"]["num_workers"] - 1)


class Evaluations:
    """A run's evaluations, scored in the background while it trains, and written to its log in
    step order as each is scored: scoring (post-processing and the metric's mesh booleans) is
    CPU work that the device need not wait for. The model's part of an evaluation runs at its
    step (`inference.Validation.run`); one thread then scores the evaluations one after another, in
    processes (`scoring_workers`, this process's `scoring_pool`, kept for its later runs)."""

    def __init__(self, log, params):
        self.log, self.pending = log, []
        self.pool = scoring_pool(scoring_workers(params))
        self.thread = ThreadPoolExecutor(1)

    def submit(self, step, scored):
        """Score `scored` (a function returning {kind: row}) for `step` in the background."""
        self.pending.append((step, self.thread.submit(scored)))

    def write(self, wait=False):
        """Log the evaluations scored by now, in step order (with `wait`, every pending one)."""
        while self.pending and (wait or self.pending[0][-1].done()):
            step, future = self.pending.pop(0)
            for kind, row in future.result().items():
                self.log.write({"step": step, "kind": kind, **row})

    def close(self):
        """Log every pending evaluation and stop the thread."""
        self.write(wait=True)
        self.thread.shutdown()


def _distributed():
    """(rank, world) under torchrun, initialising the process group once; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _device(requested, rank):
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    return torch.device("cpu")


def _set_deterministic(on):
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=False)
    torch.backends.cudnn.benchmark = not on


def _rng_state():
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def upstream_checkpoint(run):
    """The checkpoint a `Run` starts from: its upstream run's (`experiments.stage_runs`), at our start step."""
    path = checkpoint.path_for(run.upstream.dir, run.params["schedule"]["start_step"])
    if not path.is_file():
        raise FileNotFoundError(
            f"stage {run.stage} (seed {run.seed}) starts from {path}, which does not "
            f"exist: run stage {run.upstream.stage} first (same profile and runs directory)")
    return path


def train(params, run_dir, init=None, resume=None, device=None, progress=True):
    """Run one stage to `schedule.end_step`, resuming from `resume` or the newest checkpoint in `run_dir`.

    `init` is the checkpoint a fresh run starts from (the upstream stage's last one);
    it gives the weights, the global step and, with `train.keep_optimizer`, the AdamW
    moments; data order and RNG start anew. A resumed run restores everything and must
    have the same params but for `checkpoint.RESUMABLE` (a later end step, say), and
    first evaluates its checkpoint's step if that evaluation is due but not in the log
    (a run killed between the two). Rank 0 holds the run directory's lock throughout, so
    a second training there is refused, and removes the temporary files of killed saves.
    The final checkpoint is stamped with its inputs once it is evaluated (`rundir.is_current`).
    Returns the final checkpoint's path.
    """
    rank, world = _distributed()
    run_dir = Path(run_dir)
    if rank != 0:
        return _train(params, run_dir, init, resume, device, progress, rank, world)[0]
    made = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with rundir.run_lock(run_dir):
            rundir.remove_stale_temps(run_dir)
            rundir.mark_stale(checkpoint.path_for(run_dir, params["schedule"]["end_step"]))
            final, inputs = _train(params, run_dir, init, resume, device, progress, rank, world)
            rundir.mark_current(final, inputs)
            return final
    except BaseException:  # a run refused before it wrote anything leaves no empty folder behind
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _train(params, run_dir, init, resume, device, progress, rank, world):
    """`train` on one rank, after the lock: (the final checkpoint's path, the inputs this run was made
    from, which a checkpoint resumed without a further save may predate in its resumable keys)."""
    device = _device(device, rank)
    cfg, sched = params["train"], params["schedule"]
    _set_deterministic(cfg["deterministic"])
    keep_freed_memory()  # a CPU step's activations stay in the heap from one step to the next
    if cfg["batch_size"] % world:
        raise ValueError(f"train.batch_size {cfg['batch_size']} is not divisible by {world} processes")

    model, criterion, optimizer = build(params, device)

    step = sched["start_step"]
    resume = resume or checkpoint.latest(run_dir)
    init_state = checkpoint.load(init, params) if init is not None and resume is None else None
    inputs = checkpoint.inputs_of(params, init_state)
    if resume is not None:
        state = checkpoint.load(resume, params)
        changed = checkpoint.differences(state["inputs"]["params"], params, checkpoint.RESUMABLE)
        if changed:
            raise ValueError(f"{resume}: cannot resume with other params ({', '.join(changed)}); "
                             f"use another run directory")
        inputs["upstream"] = state["inputs"]["upstream"]
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        step = state["step"]
        if rank == 0:
            print(f"resumed {run_dir} from {resume} (step {step})")
    elif init_state is not None:
        model.load_state_dict(init_state["model"])
        if cfg["keep_optimizer"]:
            optimizer.load_state_dict(init_state["optimizer"])
        if init_state["step"] != step:
            raise ValueError(f"{init} is at step {init_state['step']}, but schedule.start_step is {step}")
    log = rundir.MetricsLog(run_dir / rundir.MetricsLog.FILE, resume_step=step if resume else None, enabled=rank == 0)
    if resume is None and rank == 0:
        log.path.unlink(missing_ok=True)

    train_scenes = open_split(params, "train", progress and rank == 0)
    val_scenes = open_split(params, "val", progress and rank == 0)
    log.write({"step": step, "kind": "run", "train_scenes": len(train_scenes), **how_it_ran(params, device)})
    dataset = SceneDataset(train_scenes, params["data"]["points"], params["data"]["augment"], cfg["seed"])
    if len(train_scenes) < cfg["batch_size"]:
        raise ValueError(f"{data_uri(params, 'train')}: {len(train_scenes)} scenes, fewer than one "
                         f"batch of {cfg['batch_size']}")

    forward = forward_loss(model, criterion, params, device, world)
    evaluations = Evaluations(log, params) if rank == 0 else None
    validation = Validation(val_scenes, params, device, train_scenes) if rank == 0 else None
    # The final evaluation scores eval.final_scenes; where those are the evaluations' scenes, it is the last one.
    n_final = min(len(val_scenes), final_scenes(params) or len(val_scenes))
    more = rank == 0 and n_final > len(validation.scenes)
    final = Validation(val_scenes, params, device, train_scenes, n_final) if more else None

    def save(at_step):
        if rank == 0:
            evaluations.write(wait=True)  # an evaluation before a checkpoint is in the log before it
            checkpoint.save({"step": at_step, "stage": params["stage"], "inputs": inputs, "model": model.state_dict(),
                             "optimizer": optimizer.state_dict(), "rng": _rng_state()},
                            checkpoint.path_for(run_dir, at_step))
            checkpoint.prune(run_dir, cfg["keep_checkpoints"])

    def due(at_step):
        """The kinds of evaluation due at `at_step`: the final one too at the end step."""
        return ("eval", "final") if at_step == sched["end_step"] else ("eval",)

    def run_eval(at_step, kinds):
        """Evaluate the model now, logged as each of `kinds`. Where the sets coincide, the final
        evaluation is the curve's, logged as both kinds; else the curve's scenes, the first of the
        final evaluation's, are read from it, not evaluated again (`Validation.run`'s `first`)."""
        if rank == 0:
            if final is None or "final" not in kinds:
                scored = validation.run(model, criterion, evaluations.pool)
                evaluations.submit(at_step, lambda: dict.fromkeys(kinds, scored()))
            else:
                scored = final.run(model, criterion, evaluations.pool, first=len(validation.scenes))

                def rows():
                    made = dict(zip(("final", "eval"), scored()))
                    return {kind: made[kind] for kind in kinds}
                evaluations.submit(at_step, rows)
            model.train()

    try:  # a failed run logs the evaluations it made before it stops
        eval_due = step % cfg["eval_every"] == 0 or step == sched["end_step"]
        missing = [kind for kind in due(step) if not log.evaluated(step, kind)]
        if resume is not None and eval_due and missing:
            run_eval(step, missing)  # the run was killed between this checkpoint and its evaluation
        bar = tqdm(total=sched["end_step"], initial=step, disable=not progress or rank != 0,
                   desc=params["stage"] or "train", dynamic_ncols=True)
        model.train()
        data = batches(dataset, params, device, step - sched["start_step"], rank, world)
        running, seen, t0 = {}, 0, time.perf_counter()
        if world == 1:  # ranks would stop at different steps, and the others wait for ever
            STOPPABLE.set()
        while step < sched["end_step"]:
            lr = lr_at(step + 1, sched)
            losses = train_step(forward, optimizer, to_device(next(data), device), lr)
            step += 1
            bar.update(1)

            # The sums stay on the device: reading a loss every step would make the CPU wait for
            # the GPU. They are read, and checked, before anything is logged, saved or evaluated.
            for key, value in losses.items():
                running[key] = running.get(key, 0.0) + value.detach()
            seen += 1
            last = step == sched["end_step"]
            stop = STOP.is_set() and not last  # the last step ends the run anyway
            log_now, save_now, eval_now = (step % cfg[k] == 0 or last for k in ("log_every", "ckpt_every", "eval_every"))
            if log_now or save_now or eval_now or stop:
                total = running["total"].item()
                if not math.isfinite(total):
                    raise FloatingPointError(
                        f"non-finite loss ({total}) within steps {step - seen + 1}..{step} of stage "
                        f"{params['stage']}; the last good checkpoint is "
                        f"{checkpoint.latest(run_dir) or 'none (no checkpoint written yet)'}")
            if log_now:
                rate = seen * cfg["batch_size"] / (time.perf_counter() - t0)
                row = {k: v.item() / seen for k, v in running.items()}
                log.write({"step": step, "kind": "train", "lr": lr, "samples_per_s": rate, **row})
                bar.set_postfix(loss=f"{row['total']:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.0f}")
                running, seen, t0 = {}, 0, time.perf_counter()
            if save_now or stop:
                save(step)
            if eval_now:
                run_eval(step, due(step))
            if rank == 0:
                evaluations.write()
            if stop:
                raise KeyboardInterrupt
        bar.close()
    finally:
        STOPPABLE.clear()
        STOP.clear()
        if rank == 0:
            evaluations.close()
    if world > 1:
        dist.barrier()
    return checkpoint.path_for(run_dir, step), inputs
