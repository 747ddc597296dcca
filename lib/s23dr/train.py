"""Train one stage or ablation: `python -m s23dr.train params/stage2.yaml --profile cpu`.

Runs live in `<runs>/<profile>/<stage>`; a stage with `init_from` starts from its
upstream stage's checkpoint at its own start step, found in the same runs directory.
An ablation with `sweep_lr` trains one run per LR in `<stage>/lr<LR>`, a stage with
several `seeds` one per training seed in `seed<N>` (`experiments.stage_runs`).
"""

import argparse
import signal
import sys
from pathlib import Path

from tqdm.auto import tqdm

from . import checkpoint, loop, rundir
from .config import ParamsError, load_params
from .data import check_device
from .experiments import PARAMS, stage_files, stage_runs
from .loop import train, upstream_checkpoint


def is_current(params, run_dir, init):
    """Whether `run_dir` already holds this run's final checkpoint, made from the same inputs
    (`checkpoint.inputs_of`) and evaluated: `rundir.is_current`, as the loop stamps a final
    checkpoint once it is evaluated (a run killed before that resumes to evaluate)."""
    init_state = checkpoint.load(init) if init is not None else None
    return rundir.is_current(checkpoint.path_for(run_dir, params["schedule"]["end_step"]),
                             checkpoint.inputs_of(params, init_state))


def stale_upstream(run):
    """The oldest run upstream of `run` (a `Run`) that is not current at its stage's recipe now
    (`experiments.upstream_params`, `is_current`), as (stage, run directory), or None.

    The one staleness rule of a chain: a run is current when its own stamp matches (its params,
    code and the stamp of the checkpoint it starts from) and the run it starts from is current
    too, so editing stage 1's params makes stage 2 stale before stage 1 is trained again."""
    upstream = run.upstream
    if upstream is None:
        return None
    further = stale_upstream(upstream)
    if further:
        return further
    init = upstream_checkpoint(upstream) if upstream.upstream else None
    return None if is_current(upstream.params, upstream.dir, init) else (upstream.stage, upstream.dir)


def run_stage(params, runs_dir="runs", device=None, init=None, resume=None, restart=False, progress=True,
              seed=None, folder=PARAMS):
    """Train every run of a stage (or those of training seed `seed`) unless it is current;
    returns their final checkpoints.

    With `restart`, a run made from other params, code or upstream run is trained anew: its
    own files are removed (not the folders of other runs within it, never while a training
    holds its lock, never the checkpoint it reads); a current run is kept, and with
    `progress` said so (with `resume` too). Without it, training resumes there, and an `init` other than the one
    the run started from is refused rather than ignored. A run that starts from its `init_from`
    stage's run is refused while that run, or one it starts from, is stale (`stale_upstream`,
    the stages' recipes read from `folder`): it would train from, or be kept beside, a checkpoint
    its recipe no longer makes.
    """
    finals = []
    every = stage_runs(params, runs_dir, folder)
    runs = [run for run in every if seed is None or run.seed == seed]
    if not runs:
        raise ValueError(f"stage {params['stage']} has no run of training seed {seed}; its seeds are "
                         f"{sorted({run.seed for run in every})}")
    for run in runs:
        variant, run_dir = run.params, run.dir
        start = init
        if start is None and run.upstream:
            start = upstream_checkpoint(run)
            stale = stale_upstream(run)
            if stale:
                raise ValueError(f"{run_dir} starts, directly or through another run, from {stale[1]}, which is not current (its stage's params, "
                                 f"code or upstream run changed since it was trained): train stage {stale[0]} "
                                 f"first (same profile and runs directory)")
        if is_current(variant, run_dir, start):
            if (restart or resume) and progress:  # what they ask for is not done: say so
                print(f"{run_dir}: current (made from these params, code and upstream run); kept")
            finals.append(checkpoint.path_for(run_dir, variant["schedule"]["end_step"]))
            continue
        if restart and run_dir.exists():
            rundir.check_unlocked(run_dir)  # never remove the run directory of a running training
            for given in (init, resume):
                if given is not None and Path(given).resolve().parent == run_dir.resolve():
                    raise ValueError(f"{run_dir}: --restart would remove {given}, which this training reads; "
                                     f"copy it elsewhere first")
            print(f"{run_dir}: made from other params, code or upstream run; training anew")
            rundir.remove_files(run_dir)
        elif init is not None:
            check_init_applies(variant, run_dir, init, resume)
        finals.append(train(variant, run_dir, init=start, resume=resume, device=device, progress=progress))
    return finals


def check_init_applies(params, run_dir, init, resume):
    """Refuse an `init` that a resumed run would ignore: one other than the checkpoint the run
    in `run_dir` (or `resume`) started from."""
    resume = resume or checkpoint.latest(run_dir)
    if resume is None:
        return
    upstream = checkpoint.inputs_of(params, checkpoint.load(init))["upstream"]
    if checkpoint.load(resume)["inputs"]["upstream"] != upstream:
        raise ValueError(f"{run_dir}: its run started from another checkpoint than --init {init}, and "
                         f"resuming it from {resume} would ignore --init; add --restart to train it anew from {init}")


#: How many times its recipe's steps (the stage file at the profile) a run may train without --allow-long.
LONG = 10


def check_length(params, path, allow_long=False):
    """Refuse a schedule more than `LONG` times as long as the stage's recipe at its profile (a
    typo'd --set schedule.end_step=1000000000 would hold the machine for weeks), naming the key,
    the value and the limit, unless `allow_long`."""
    recipe = load_params(path, params["profile"])["schedule"]
    sched = params["schedule"]
    limit = sched["start_step"] + LONG * (recipe["end_step"] - recipe["start_step"])
    if sched["end_step"] > limit and not allow_long:
        raise ParamsError(f"{path}: schedule.end_step {sched['end_step']} is beyond {limit}, {LONG}x the "
                          f"{params['profile']} recipe's {recipe['end_step'] - recipe['start_step']} steps "
                          f"from start_step {sched['start_step']}; add --allow-long to train that long")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m s23dr.train", description=__doc__.splitlines()[0])
    parser.add_argument("params", help="a stage or ablation file in params/")
    parser.add_argument("--profile", default="full", help="full, cpu or smoke (params/profiles.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a params key, e.g. --set train.batch_size=16")
    parser.add_argument("--runs", default="runs", help="root of the run directories (default: runs)")
    parser.add_argument("--init", help="start from this checkpoint instead of the init_from stage's")
    parser.add_argument("--resume", help="resume from this checkpoint (default: the run's newest)")
    parser.add_argument("--restart", action="store_true",
                        help="retrain a run whose directory was made from other params, code or upstream run "
                             "(a current run is kept)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--seed", type=int, help="train only the runs of this training seed (default: every seed)")
    parser.add_argument("--allow-long", action="store_true",
                        help=f"train a schedule more than {LONG}x as long as the stage's recipe at the profile")
    args = parser.parse_args(argv)
    loop.separate_compile_caches()
    params, folder = None, Path(args.params).parent
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        params = load_params(args.params, args.profile, args.set)
        check_length(params, args.params, args.allow_long)
        if params["init_from"] and params["init_from"] not in stage_files(folder):  # the graph checked too
            raise ParamsError(f"{args.params}: init_from {params['init_from']} names no stage in {folder}")
        if args.device is not None:  # an empty --device is refused, not taken as the default
            check_device(args.device)
        for final in run_stage(params, args.runs, args.device, args.init, args.resume, args.restart,
                               seed=args.seed, folder=folder):
            print(final)
    except (ParamsError, OSError, ValueError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        for bar in list(getattr(tqdm, "_instances", ())):  # the loop's progress bar: end its line first
            bar.close()
        print(f"interrupted: {where_stopped(params, args.runs, folder)}", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def interrupt(signum, frame):
    """SIGTERM (a scheduler's or a container's stop) and Ctrl-C: a one-process training loop
    ends its step and saves a checkpoint there (`loop.STOP`); otherwise, or asked again, it
    stops now. Either way the lock is released, the scoring processes stopped, and where the
    run stopped and how to resume it said."""
    if not loop.STOPPABLE.is_set() or loop.STOP.is_set():
        raise KeyboardInterrupt
    loop.STOP.set()


def where_stopped(params, runs_dir, folder=PARAMS):
    """An interrupted training in one line: the step its run reached and how to resume it
    (the loop keeps a checkpoint every train.ckpt_every steps, and one where a stop asked it to;
    the same command resumes)."""
    logs = [run.dir / rundir.MetricsLog.FILE for run in stage_runs(params, runs_dir, folder)] if params else []
    logs = [log for log in logs if log.is_file()]
    if not logs:
        return "before the first logged step; nothing to resume"
    log = max(logs, key=lambda path: path.stat().st_mtime)  # a sweep's runs train one after another
    reached = max((row["step"] for row in rundir.MetricsLog.read(log)), default="none")
    newest = checkpoint.latest(log.parent)
    if newest is None:
        return f"{log.parent} at step {reached}, before its first checkpoint; the same command starts it anew"
    return f"{log.parent} at step {reached}; the same command resumes it from {newest}"


if __name__ == "__main__":
    sys.exit(main())
