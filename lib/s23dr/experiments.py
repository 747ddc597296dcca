"""The experiment graph, read from params: which params files are stages, their runs, and
what each run starts from (the book, Stages).

A params file is a *stage* when it names one (`stage:`). It starts from the final
checkpoint of its `init_from` stage, and an ablation or control arm that inherits another
stage's file (`inherit: stage2.yaml`) is drawn and compared beside that stage. A stage
has one run per learning rate of `sweep_lr` and per training seed (`seeds`: train.seed,
train.seed + 1, ...), a `Run`; a run of seed s starts from its upstream stage's run of seed s
(or from that stage's first run, when it has no seed s). The recipe's own stages are the
`main_chain`. Nothing here is typed twice: the pipeline, the notebooks' dependencies, the
analysis and the tests follow from these functions.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import flatten
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


def main_chain(folder=PARAMS):
    """{stage: params file} of the recipe's own stages, in training order: the stage files that
    inherit no other stage's file (an ablation, a control arm or a variant inherits the file of
    the stage it changes)."""
    return {name: path for name, path in stage_files(folder).items() if not inherited_stage(path)}


def point_stages(profile, folder=PARAMS, overrides=()):
    """{stage: params} of the `main_chain`'s first stage at each point count it trains on, at
    `profile`: the stages whose data and step cost differ (stage 1 and the finetune)."""
    found = {}
    for name, path in main_chain(folder).items():
        params = load_params(path, profile, overrides)
        if all(p["data"]["points"] != params["data"]["points"] for p in found.values()):
            found[name] = params
    return found


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


@dataclass(frozen=True)
class Run:
    """One run of a stage, as `stage_runs` makes it: its stage, sweep LR (None without a sweep),
    training seed and directory, its full params, and the `Run` it starts from (None from
    scratch). Runs are equal by stage, LR, seed and directory."""
    stage: str
    lr: float | None
    seed: int
    dir: Path
    params: dict = field(compare=False, repr=False)
    upstream: "Run | None" = field(compare=False, repr=False)

    @property
    def arm(self):
        """The arm the run belongs to: the stage, or `<stage> lr=<LR>` for a run of a sweep (its
        seeds are the arm's repeats)."""
        return self.stage if self.lr is None else f"{self.stage} lr={self.lr:g}"

    @property
    def label(self):
        """How the book names the run: its `arm`, then ` seed=<N>` when the stage has several seeds."""
        return self.arm + (f" seed={self.seed}" if self.params["seeds"] > 1 else "")


def stage_runs(params, runs_dir, folder=PARAMS):
    """The `Run`s of a stage, in `<runs>/<profile>/<stage>`: one, or one per LR of `sweep_lr`
    (`lr<LR>/`), and with several seeds one per seed (`seed<N>/`); each directory checked to
    lie, resolved, within `<runs>/<profile>`. A run of seed s starts from its `init_from`
    stage's run of seed s, or from that stage's first seed when it has no run of s (params
    alone decide it, never which directories exist: `upstream_params`, read from `folder`)."""
    root = Path(runs_dir) / params["profile"]
    stage_dir = root / params["stage"]
    upstream = stage_runs(upstream_params(params, folder), runs_dir, folder) if params["init_from"] else []
    if any(run.lr is not None for run in upstream):
        raise ParamsError(f"stage {params['stage']} starts from {params['init_from']}, which sweeps LRs: "
                          f"a stage can start only from a stage of one run per seed")
    runs = []
    for lr in params["sweep_lr"] or [None]:
        lr_dir = stage_dir if lr is None else stage_dir / f"lr{lr:g}"
        for seed in seeds(params):
            variant = {**params, "train": {**params["train"], "seed": seed}}
            if lr is not None:
                variant["schedule"] = {**params["schedule"], "lr": float(lr)}
            run_dir = lr_dir if params["seeds"] == 1 else lr_dir / f"seed{seed}"
            if not run_dir.resolve().is_relative_to(root.resolve()):  # a link could lead a training's writes elsewhere
                raise ValueError(f"{run_dir} lies outside {root} (it resolves to {run_dir.resolve()}); "
                                 f"a run directory must lie within its runs directory")
            start = next((up for up in upstream if up.seed == seed), upstream[0]) if upstream else None
            runs.append(Run(params["stage"], None if lr is None else float(lr), seed, run_dir, variant, start))
    return runs


def upstream_params(params, folder=PARAMS):
    """The params of the stage that stage `params` starts from: its `init_from` stage's recipe
    now, at the same profile and with the keys `params` sets beyond its own file's recipe (a
    --set override, a notebook's data or seed) but for its own `schedule` and sweep."""
    files = named_stages(folder)
    for name in (params["stage"], params["init_from"]):
        if name not in files:
            raise ParamsError(f"stage {name} is named by no params file in {folder}; name the folder of its recipes")
    recipe = flatten(load_params(files[params["stage"]], params["profile"]))
    own = ("schedule", "sweep_lr", "stage", "init_from", "profile")
    overrides = [f"{key}={json.dumps(value)}" for key, value in flatten(params).items()
                 if value != recipe.get(key) and key.split(".")[0] not in own]
    return load_params(files[params["init_from"]], params["profile"], overrides)


def stage_params(profile, folder=PARAMS, overrides=()):
    """{stage: params} of every stage file at `profile`, in `stage_files` order."""
    return {name: load_params(path, profile, overrides) for name, path in stage_files(folder).items()}
