"""The experiment graph, read from params: which params files are stages, their runs, and
what each run starts from (the book, Stages).

A params file is a *stage* when it names one (`stage:`). It starts from the final
checkpoint of its `init_from` stage, and an ablation or control arm that inherits another
stage's file (`inherit: stage2.yaml`) is drawn and compared beside that stage. A stage
has one run per learning rate of `sweep_lr` and per training seed (`seeds`: train.seed,
train.seed + 1, ...); a run of seed s starts from its upstream stage's run of seed s
(or from its only run, when that stage has one seed). Nothing here is typed twice: the
pipeline, the notebooks' dependencies and the tests follow from these functions.
"""

from pathlib import Path

from .config import ParamsError, load_params, read_yaml

PARAMS = Path("params")


def named_stages(folder=PARAMS):
    """{stage name: params file} of the files in `folder` that name a stage, in file-name order;
    a stage named by two files is refused, naming both."""
    found = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        name = read_yaml(path).get("stage")
        if name and not isinstance(name, str):
            raise ParamsError(f"{path}: stage should be a name, got {name!r}")
        if name in found:
            raise ParamsError(f"stage {name} is named by two params files, {found[name]} and {path}")
        if name:
            found[name] = path
    return found


def _unknown_stage(path, name):
    return ParamsError(f"{path}: init_from {name} names no stage in {Path(path).parent}")


def _cycle(found, names):
    return ParamsError(f"{found[names[0]]}: stages start from or inherit each other in a cycle: {' -> '.join(names)}")


def stage_files(folder=PARAMS):
    """`named_stages`, each after the stages it starts from or inherits from (then by name). An
    `init_from` that names no stage, or a cycle, is refused, naming the files."""
    found, ordered = named_stages(folder), []

    def visit(name, after):
        if name in after:
            raise _cycle(found, [*after[after.index(name):], name])
        if name not in ordered:
            for before in parents(found[name]):
                if before not in found:
                    raise _unknown_stage(found[name], before)
                visit(before, after + [name])
            ordered.append(name)

    for name in found:
        visit(name, [])
    return {name: found[name] for name in ordered}


def inherited_stage(path):
    """The stage whose params file `path` inherits (an ablation's or a control arm's), or None."""
    inherit = read_yaml(path).get("inherit")
    return read_yaml(Path(path).parent / inherit).get("stage") if inherit else None


def parents(path):
    """The stages the file `path` depends on: its `init_from` stage and `inherited_stage`."""
    return [name for name in dict.fromkeys([load_params(path)["init_from"], inherited_stage(path)]) if name]


def upstream_stages(path):
    """The stages a stage's page draws before its own: its `init_from` chain, oldest first, then
    the stage whose file it inherits (an ablation's or a control arm's) if not in that chain."""
    found = named_stages(Path(path).parent)
    followed, here, name = [read_yaml(path).get("stage")], Path(path), load_params(path)["init_from"]
    while name:
        if name in followed:
            raise _cycle(found, [*followed[followed.index(name):], name])
        if name not in found:
            raise _unknown_stage(here, name)
        followed.append(name)
        here = found[name]
        name = load_params(here)["init_from"]
    chain = followed[:0:-1]
    inherited = inherited_stage(path)
    return chain + [inherited] if inherited and inherited not in chain else chain


def seeds(params):
    """The training seeds of a stage's runs: train.seed and the next `seeds - 1` integers."""
    return [params["train"]["seed"] + i for i in range(params["seeds"])]


def stage_runs(params, runs_dir):
    """(params, run directory) of each run of a stage, in `<runs>/<profile>/<stage>`: one, or one
    per LR of `sweep_lr` (`lr<LR>/`), and with several seeds one per seed (`seed<N>/`); each
    checked to lie, resolved, within `<runs>/<profile>`."""
    root = Path(runs_dir) / params["profile"]
    stage_dir = root / params["stage"]
    runs = []
    for lr in params["sweep_lr"] or [None]:
        lr_dir = stage_dir if lr is None else stage_dir / f"lr{lr:g}"
        for seed in seeds(params):
            variant = {**params, "train": {**params["train"], "seed": seed}}
            if lr is not None:
                variant["schedule"] = {**params["schedule"], "lr": float(lr)}
            runs.append((variant, lr_dir if params["seeds"] == 1 else lr_dir / f"seed{seed}"))
    for _, run_dir in runs:  # a link within the runs could lead a training's writes or removals elsewhere
        if not run_dir.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"{run_dir} lies outside {root} (it resolves to {run_dir.resolve()}); "
                             f"a run directory must lie within its runs directory")
    return runs


def run_label(params, run):
    """How the book names one run of a stage: the stage, then ` lr=<LR>` for a run of a sweep
    and ` seed=<N>` when the stage has several seeds."""
    label = params["stage"]
    if params["sweep_lr"]:
        label += f" lr={run['schedule']['lr']:g}"
    if params["seeds"] > 1:
        label += f" seed={run['train']['seed']}"
    return label


def upstream_run_dir(params, runs_dir):
    """The run directory a run starts from: its `init_from` stage's run of the same training
    seed, or that stage's only run."""
    stage_dir = Path(runs_dir) / params["profile"] / params["init_from"]
    seeded = stage_dir / f"seed{params['train']['seed']}"
    return seeded if seeded.is_dir() else stage_dir


def stage_params(profile, folder=PARAMS, overrides=()):
    """{stage: params} of every stage file at `profile`, in `stage_files` order."""
    return {name: load_params(path, profile, overrides) for name, path in stage_files(folder).items()}
