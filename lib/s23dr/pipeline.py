"""The main job: synthetic data, every notebook in dependency order, the book.

`python -m s23dr.pipeline book --profile cpu` generates the synthetic dataset the
profile trains on, executes the notebooks with papermill into `book/executed/` (side by
side, each after the notebooks it reads), and builds the Jupyter Book into `_build/html`
with warnings as errors. A notebook is
executed again, and a synthetic dataset generated again, only when its inputs changed
(`rundir.is_current`, the rule training runs follow too: `train.run_stage`, where a run is
current only while the runs it starts from are current at their recipes: `train.stale_upstream`).
Every stage's runs are trained first, side by side where the recipe allows
(`prepare_runs`, also the test suite's setup). What the notebooks call is `s23dr.analysis` (a page's set-up,
`notebook`; its sections, `stage_report`, `results_page`, `data_page`).
"""

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from concurrent.futures import ProcessPoolExecutor
from importlib.resources import files
from pathlib import Path

# No module-level `import torch` here: a trainer process (`prepare_runs`, spawned) imports this
# module as `__mp_main__`, and pickle names a torch memory format by the first module in
# sys.modules that reaches it as `<module>.torch...`; inductor's cache key of the compiled step
# pickles those, so a `torch` here gave the trainers another key than any other process's and
# every page that runs a step compiled it again (the book, Method: the compiled step).
from . import checkpoint, loop, rundir
from .config import read_yaml
from .experiments import inherited_stage, point_stages, stage_files, stage_params, stage_runs, upstream_stages
from .data import trains_on_synthetic

EXECUTED = Path("book/executed")
BOOK = Path("_build/html")
#: The one setting of the book's repository URL (https://github.com/OWNER/NAME): when set, the
#: book's repository and issue buttons link there; unset, the book names no repository.
REPOSITORY_ENV = "S23DR_REPOSITORY_URL"
PLOTLY_JS = Path("book/_static/plotly.min.js")
CHECK = "# NBVAL_CHECK_OUTPUT"  # marks a cell whose output nbval compares

#: The notebooks that train nothing, in execution order, with the notebooks each reads
#: ("stages": the page of every stage); a stage's page comes from `stage_notebooks`.
PAGES = {"data": [], "reproducibility": [], "results": ["reproducibility", "stages"]}


def stage_notebooks():
    """{stage: the stages whose pages it reads} of the stages with a page (`notebooks/<stage>.ipynb`):
    the stages its page draws beside its own (`experiments.upstream_stages`) that have pages too."""
    files = stage_files()
    pages = [name for name in files if Path(f"notebooks/{name}.ipynb").is_file()]
    return {name: [s for s in upstream_stages(files[name]) if s in pages] for name in pages}


def toc_pages(toc=Path("_toc.yml")):
    """Every page of the book's table of contents, as its path without suffix; a `glob` entry
    (book/executed/<pattern>) stands for the notebooks in `notebooks/` it matches."""
    import yaml

    tree, pages = yaml.safe_load(Path(toc).read_text()), []

    def walk(entries):
        for entry in entries:
            if "glob" in entry:
                found = sorted(Path(toc).parent.joinpath("notebooks").glob(Path(entry["glob"]).name + ".ipynb"))
                pages.extend((EXECUTED / p.stem).as_posix() for p in found)
            else:
                pages.append(entry["file"])
            walk(entry.get("sections", []))

    pages.append(tree["root"])
    for part in tree["parts"]:
        walk(part["chapters"])
    return pages


def notebooks():
    """{notebook: the notebooks it reads}, in an order where each comes after those it reads."""
    stages = stage_notebooks()
    order = {name: reads for name, reads in PAGES.items() if name != "results"}
    order.update(stages)
    order["results"] = [r for read in PAGES["results"] for r in (list(stages) if read == "stages" else [read])]
    return order


def synthetic_points(profile):
    """The point counts a profile trains on (`experiments.point_stages`: stage 1's and stage 2's)."""
    return sorted(params["data"]["points"] for params in point_stages(profile).values())


def build_data(profile):
    """Generate the synthetic datasets the profile's stages train on, each unless it is current
    (`rundir.is_current`: made with the same sizes, world and seed by the same generator,
    `rundir.code_version("synthetic_data")`); a stage on other data (as at `full`, the hub)
    needs none. Returns the roots of the synthetic datasets."""
    from .synthetic_data import build_dataset

    wanted = {}  # root -> (params data.synthetic, point counts)
    for name, params in stage_params(profile).items():
        if not trains_on_synthetic(params):
            continue
        syn = params["data"]["synthetic"]
        root = Path(syn["root"])
        known, points = wanted.setdefault(root, (syn, set()))
        if known != syn:
            raise ValueError(f"params/{name}.yaml at profile {profile}: data.synthetic.root {root} is another "
                             "stage's dataset with other sizes or world; give this one its own root")
        points.add(params["data"]["points"])
    for root, (syn, points) in wanted.items():
        inputs = {**syn, "generator": rundir.code_version("synthetic_data")}
        stale = [p for p in sorted(points) if not rundir.is_current(root / f"sampled_{p}", inputs)]
        if stale:
            for p in stale:
                rundir.mark_stale(root / f"sampled_{p}")
            for path in build_dataset(root, syn["train"], syn["val"], points=tuple(stale), seed=syn["seed"],
                                      world=syn["world"]).values():
                rundir.mark_current(path, inputs)
    return list(wanted)


def notebook_inputs(name, profile, runs, upstream):
    """What an executed notebook depends on (`rundir.is_current`): its source, the params, the
    whole library (a notebook may call any of it), the benchmarks' saved results (the Results
    notebook tabulates them), its parameters and `upstream`, the stamps of the notebooks it reads."""
    return {"notebook": rundir.files_hash([Path(f"notebooks/{name}.ipynb")]),
            "params": rundir.files_hash(sorted(Path("params").glob("*.yaml"))),
            "code": rundir.code_version(),
            "benchmarks": rundir.files_hash(sorted(Path("benchmarks/results").rglob("*.json"))),
            "profile": profile, "runs": str(runs), "upstream": list(upstream)}


def all_notebook_inputs(profile, runs):
    """{notebook: `notebook_inputs`} of every notebook, each with the stamps of those it reads."""
    graph, inputs = notebooks(), {}
    for name in graph:
        inputs[name] = notebook_inputs(name, profile, runs, [rundir.stamp(inputs[d]) for d in graph[name]])
    return inputs


def book_inputs(profile, runs):
    """What the built book depends on (`rundir.is_current`, which `s23dr.publish` checks): every
    executed notebook's inputs, the chapters and static files Sphinx reads beside them, the
    configuration and the repository URL setting (`REPOSITORY_ENV`)."""
    pages = [p for p in sorted(Path("book").rglob("*")) if p.is_file() and EXECUTED not in p.parents]
    return {"notebooks": all_notebook_inputs(profile, runs),
            "pages": rundir.files_hash([Path("_config.yml"), Path("_toc.yml"), *pages]),
            "repository": repository_url()}


def execute_notebooks(profile, runs="runs", only=None):
    """Execute the notebooks with papermill, skipping current ones, side by side on the CPU's
    threads (one thread each), each once the notebooks it reads are done. A notebook that fails
    stops the job with the tail of its log."""
    import torch

    EXECUTED.mkdir(parents=True, exist_ok=True)
    graph, inputs, stale = notebooks(), all_notebook_inputs(profile, runs), []
    for name in graph:
        if only and name not in only:
            continue
        if rundir.is_current(EXECUTED / f"{name}.ipynb", inputs[name]):
            print(f"{name}: current")
        else:
            rundir.mark_stale(EXECUTED / f"{name}.ipynb")
            stale.append(name)
    workers = max(1, torch.get_num_threads())

    def execute(name):
        print(f"{name}: executing")
        run_logged([sys.executable, "-m", "papermill", f"notebooks/{name}.ipynb", str(EXECUTED / f"{name}.ipynb"),
                    "-r", "profile", profile, "-r", "runs", str(runs), "--cwd", str(Path.cwd()), "-k", "python3",
                    "--no-progress-bar"], EXECUTED / f"{name}.log", {**os.environ, "OMP_NUM_THREADS": "1"},
                   f"executing notebooks/{name}.ipynb")
        rundir.mark_current(EXECUTED / f"{name}.ipynb", inputs[name])
        print(f"{name}: executed")

    run_graph({n: [r for r in graph[n] if r in stale] for n in stale}, execute, workers)


def run_graph(tasks, run, workers, priority=None, shape=None):
    """Call `run(task)` for each task of `tasks` ({task: the tasks it waits for}) on `workers`
    threads, each once those it waits for are done, the ready one of highest `priority(task)`
    first (default: in the order given). With `shape` (task -> its compiled step's key, or None),
    a task whose shape is running for the first time waits while another ready task can start
    instead: the second process then loads that step from inductor's cache rather than
    compiling it at the same time (`step_shape`). No worker waits for it. The first failure
    stops the job: it is raised once the running tasks have ended."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    pending, running, done = list(tasks), {}, set()
    rank = priority or (lambda task: -list(tasks).index(task))
    shape = shape or (lambda task: None)
    with ThreadPoolExecutor(workers) as pool:
        while pending or running:
            ready = sorted((t for t in pending if not any(d in pending or d in running for d in tasks[t])),
                           key=rank, reverse=True)
            first, later = [], []  # `later`: a shape whose first run is under way
            compiling = {shape(t) for t in running}
            for task in ready:
                key = shape(task)
                (later if key in compiling and key not in done and key is not None else first).append(task)
                compiling.add(key)
            for task in (first + later)[:workers - len(running)]:
                pending.remove(task)
                running[task] = pool.submit(run, task)
            finished, _ = wait(running.values(), return_when=FIRST_COMPLETED)
            for task in [t for t, job in running.items() if job in finished]:
                running.pop(task).result()
                done.add(shape(task))


def run_logged(command, log, env, what):
    """Run `command` with its output in the file `log`; if it fails, raise naming `what`, the
    log and the log's last line."""
    with open(log, "w") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise failed(what, log)


def failed(what, log):
    """The error of a job that failed: `what`, its log and the log's last line."""
    tail = [line for line in Path(log).read_text().splitlines() if line.strip()][-1:] or ["(empty log)"]
    return RuntimeError(f"{what} failed ({log}): {tail[0]}")


def record_checks(profile="smoke", runs="runs", only=None):
    """Store in `notebooks/` the outputs that nbval compares (the cells marked
    `# NBVAL_CHECK_OUTPUT`): each notebook (of `only`, when given) is executed at `profile`
    on one thread, as conftest.py runs them, and its check cells' outputs are copied into it.
    Run it after a change that is meant to move those numbers, and review the diff."""
    import nbformat
    import papermill
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"  # the kernels started below, and this process
    torch.set_num_threads(1)
    prepare_runs(profile, runs)
    with tempfile.TemporaryDirectory() as tmp:
        for name in [n for n in notebooks() if not only or n in only]:
            template, out = Path(f"notebooks/{name}.ipynb"), Path(tmp) / f"{name}.ipynb"
            papermill.execute_notebook(str(template), str(out), cwd=str(Path.cwd()),
                                       parameters={"profile": profile, "runs": str(runs)},
                                       progress_bar=False, kernel_name="python3")
            executed = {c.source: c for c in nbformat.read(out, 4).cells if CHECK in c.source}
            notebook = nbformat.read(template, 4)
            for cell in notebook.cells:
                if CHECK in cell.source:  # nbval skips a reference cell without an execution count
                    cell.outputs = executed[cell.source].outputs
                    cell.execution_count = executed[cell.source].execution_count
            nbformat.write(notebook, template)
            print(f"{template}: {sum(CHECK in c.source for c in notebook.cells)} check cells recorded")


#: The page of an ablation without a notebook of its own (`ablation_page`).
ABLATION_TEMPLATE = Path("notebooks/templates/ablation.ipynb")


def ablation_page(path):
    """Write `notebooks/<stage>.ipynb`, the page of the stage file `path` (an ablation: a file
    that inherits a stage's and changes one thing), from `ABLATION_TEMPLATE`: its title the
    first sentence of the file's opening comment, its introduction the rest. The pipeline then
    executes it with the other pages, and the book lists it under Ablations (_toc.yml reads
    `book/executed/ablation_*`). An existing notebook is refused, not overwritten."""
    import nbformat

    path = Path(path)
    stage = read_yaml(path).get("stage")
    if not stage or not inherited_stage(path):
        raise ValueError(f"{path}: an ablation's params file names its stage (stage:) and inherits a stage's file (inherit:)")
    if not stage.startswith("ablation_"):
        raise ValueError(f"{path}: an ablation's stage is named ablation_<what it changes>, got {stage}")
    out = Path(f"notebooks/{stage}.ipynb")
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it first to make it again from {ABLATION_TEMPLATE}")
    opening = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        opening.append(line.lstrip("#").strip())
    title, _, rest = " ".join(opening).partition(". ")
    if not title:
        raise ValueError(f"{path}: open the file with a comment saying what the ablation changes and why (its page's text)")
    fill = {"<<TITLE>>": title.rstrip("."), "<<DESCRIPTION>>": rest, "<<STAGE>>": stage, "<<PARAMS>>": path.as_posix()}
    notebook = nbformat.read(ABLATION_TEMPLATE, 4)
    for cell in notebook.cells:
        for marker, value in fill.items():
            cell.source = cell.source.replace(marker, value)
    nbformat.write(notebook, out)
    return out


def repository_url():
    """The book's repository URL from `REPOSITORY_ENV`, or "" when unset."""
    url = os.environ.get(REPOSITORY_ENV, "").strip()
    if url and not url.startswith("https://"):
        raise ValueError(f"{REPOSITORY_ENV} should be a repository URL like https://github.com/OWNER/NAME, got {url!r}")
    return url


def book_config(folder):
    """The configuration file to build with: `_config.yml`, or, when `REPOSITORY_ENV` is set,
    a copy in `folder` with the repository URL and its buttons on."""
    import yaml

    url = repository_url()
    if not url:
        return Path("_config.yml")
    config = yaml.safe_load(Path("_config.yml").read_text())
    config["repository"] = {**config.get("repository", {}), "url": url, "branch": "main"}
    config["html"] = {**config["html"], "use_repository_button": True, "use_issues_button": True}
    path = Path(folder) / "_config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_book(profile="cpu", runs="runs"):
    """Sphinx build of the book from the executed notebooks into `_build/html`; any warning fails it.
    Once built, it is stamped with `book_inputs`, which `s23dr.publish` checks.

    The plotly figures are HTML without plotly.js; the book loads the plotly package's
    own copy from `book/_static/` (_config.yml: html_js_files), so pages work offline.
    """
    import re

    PLOTLY_JS.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files("plotly") / "package_data" / "plotly.min.js", PLOTLY_JS)
    rundir.mark_stale(BOOK)
    # jupyter_book has no __main__ module, so call its command line's entry point. --all:
    # numbers pasted from other pages (glue `notebook::key`) are no Sphinx dependency, so an
    # incremental build could keep stale ones. --keep-going: report every warning, then fail.
    cli = "from jupyter_book.cli.main import main; main()"
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-c", cli, "build", ".", "--config", str(book_config(folder)), "--all",
                        "--warningiserror", "--keep-going"], check=True)
    # Offline means no page loads a script, style or image from the network (MathJax from a CDN, say).
    remote = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(?:https?:)?//')
    online = sorted(str(p) for p in BOOK.rglob("*.html") if remote.search(p.read_text(errors="replace")))
    if online:
        raise RuntimeError(f"these pages load remote assets, but the book must read offline: {', '.join(online)}")
    rundir.mark_current(BOOK, book_inputs(profile, runs))


def training_runs(profile):
    """{(stage, seed): the (stage, seed) it starts from} of every stage's runs at `profile`
    (`experiments.stage_runs`), and {(stage, seed): the samples x points its training and what
    starts from it still need} (the longest chain first keeps every worker busy to the end)."""
    tasks, cost = {}, {}
    for name, params in stage_params(profile).items():
        sched = params["schedule"]
        work = ((sched["end_step"] - sched["start_step"]) * params["train"]["batch_size"]
                * params["data"]["points"] * len(params["sweep_lr"] or [None]))
        for run in stage_runs(params, "."):  # a task trains every LR of its seed
            tasks[(name, run.seed)] = [] if run.upstream is None else [(run.upstream.stage, run.upstream.seed)]
            cost[(name, run.seed)] = work
    chain = {}
    for task in reversed(list(tasks)):  # stage_files order: what starts from a task comes after it
        chain[task] = cost[task] + max((chain[t] for t, after in tasks.items() if task in after), default=0)
    return tasks, chain


#: The kinds of work on a trained run that pages read (`follow_ups`).
SCORED, AGAIN = "scored at the other point count", "trained again"


def follow_ups(profile):
    """{(kind, stage, seed): [(stage, seed), the training run it reads]}: every run of
    `point_counts.ARMS` scored at the other point count (`SCORED`), and the first run of
    `reproducibility.TWICE` trained again (`AGAIN`). Each keeps its result beside the run's
    final checkpoint, where the Results and Reproducibility pages read it."""
    from .analysis import point_counts, reproducibility

    recipes, found = stage_params(profile), {}
    for kind, stages in ((SCORED, point_counts.ARMS), (AGAIN, (reproducibility.TWICE,))):
        for name in (s for s in stages if s in recipes):
            runs = stage_runs(recipes[name], ".")
            for run in runs[:1] if kind == AGAIN else runs:
                found[(kind, name, run.seed)] = [(name, run.seed)]
    return found


def follow_up(kind, stage, seed, profile, runs):
    """Do the follow-up `kind` (`follow_ups`) of `stage`'s run of training seed `seed`."""
    from .analysis import point_counts, reproducibility

    recipes = stage_params(profile)
    run = next(r for r in stage_runs(recipes[stage], runs) if r.seed == seed)
    final = checkpoint.path_for(run.dir, run.params["schedule"]["end_step"])
    if not final.is_file():
        raise FileNotFoundError(f"{final}: stage {stage} (seed {seed}) has no final checkpoint to be {kind}")
    if kind == SCORED:
        point_counts.at_other_points(run, point_counts.point_counts(recipes))
    else:
        reproducibility.trained_twice(run)


def prepare_runs(profile, runs="runs", workers=None):
    """The data and every stage's runs of a profile, trained before any notebook reads them.

    Each run of a stage and training seed (`training_runs`) trains once the run it starts from
    is done (`python -m s23dr.train --seed`, called in a trainer process with its output in
    `<runs>/<profile>/logs/`), side by side in one trainer process per CPU thread, each on one
    thread: on a small CPU two one-thread trainings make nearly twice the samples per second of
    one two-thread training (`python -m s23dr.bench`). A trainer process trains run after run,
    so it compiles each shape of step once (`loop.forward_loss`), not once per run. The work on
    trained runs that pages read (`follow_ups`) is done there too, once its run is trained. The
    notebooks then find their runs current. A run that fails stops the job with its stage and
    the tail of its log.
    """
    import torch

    build_data(profile)
    tasks, chain = training_runs(profile)
    after = follow_ups(profile)
    files = stage_files()
    workers = workers or max(1, min(len(tasks), torch.get_num_threads()))
    threads = max(1, torch.get_num_threads() // workers)
    logs = Path(runs) / profile / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    trainers = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=torch.set_num_threads, initargs=(threads,))

    def work(task):
        if task in after:
            kind, name, seed = task
            log = logs / f"{name}-seed{seed}-{kind.replace(' ', '-')}.log"
            if trainers.submit(logged, log, follow_up, kind, name, seed, profile, str(runs)).result():
                raise failed(f"{name} (seed {seed}) {kind}", log)
            print(f"{name} seed {seed}: {kind}")
            return
        name, seed = task
        log = logs / f"{name}-seed{seed}.log"
        argv = [str(files[name]), "--profile", profile, "--runs", str(runs), "--restart", "--seed", str(seed)]
        if trainers.submit(logged, log, train_main, argv).result():
            raise failed(f"training {name} (seed {seed})", log)
        print(f"{name} seed {seed}: trained or current")

    print(f"training {len(tasks)} runs of {len(files)} stages on {workers} worker(s), and {len(after)} follow-ups")
    recipes = stage_params(profile)
    with trainers:  # a follow-up goes first once its run is trained: the longest chains still end the job
        run_graph({**tasks, **after}, work, workers, priority=lambda task: chain.get(task, float("inf")),
                  shape=lambda task: step_shape(recipes[task[0]]) if task in tasks else None)


def step_shape(params):
    """What makes a run's compiled training step a graph of its own (`loop.forward_loss`: static
    shapes): its points, batch, model and loss settings. Runs of one shape share the step."""
    return json.dumps([params["data"]["points"], params["train"]["batch_size"], params["model"], params["loss"]],
                      sort_keys=True)


def logged(log, function, *args):
    """`function(*args)` in this process, its output in the file `log`; returns its exit status:
    what it returns (None: 0), or 1 when it raised (the traceback in the log too)."""
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            return function(*args) or 0
        except Exception:
            traceback.print_exc()
            return 1


def train_main(argv):
    """`python -m s23dr.train` with `argv`: its exit status."""
    from . import train

    return train.main(argv)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m s23dr.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["data", "notebooks", "book", "checks", "ablation"],
                        help="checks: record the outputs that nbval compares, at the smoke profile by default; "
                             "ablation: make the page of the ablation PARAMS from the template and record its checks")
    parser.add_argument("params", nargs="?", help="ablation: its params file (params/ablation_<name>.yaml)")
    parser.add_argument("--profile", default=None, help="default: cpu (checks: smoke)")
    parser.add_argument("--runs", default="runs", help="root of the run directories (default: runs)")
    parser.add_argument("--only", nargs="*", help="execute only these notebooks")
    args = parser.parse_args(argv)
    args.profile = args.profile or ("smoke" if args.what in ("checks", "ablation") else "cpu")
    loop.separate_compile_caches()
    if args.what == "book":
        try:
            repository_url()  # before the training, not after it
        except ValueError as err:
            parser.error(str(err))
    if args.what == "data":
        build_data(args.profile)
    elif args.what == "checks":
        record_checks(args.profile, args.runs, args.only)
    elif args.what == "ablation":
        if not args.params:
            parser.error("ablation needs its params file: python -m s23dr.pipeline ablation params/ablation_<name>.yaml")
        try:
            page = ablation_page(args.params)
        except (ValueError, OSError) as err:
            parser.error(str(err))
        record_checks(args.profile, args.runs, [page.stem])
        print(f"{page}: made; `make book` trains the ablation and adds its page to the book")
    else:
        prepare_runs(args.profile, args.runs)
        execute_notebooks(args.profile, args.runs, args.only)
    if args.what == "book":
        build_book(args.profile, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
