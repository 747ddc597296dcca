"""The experiment graph comes from params alone: the stages, what each starts from and is
drawn beside, their runs per LR and seed, the order they train in, the book's pages."""

import re
import shutil
from pathlib import Path

import pytest
import yaml

from s23dr import pipeline
from s23dr.config import ParamsError
from s23dr.experiments import main_chain, point_stages, stage_files, stage_params, stage_runs, upstream_stages

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params"


def test_stages_are_the_params_files_that_name_one_each_after_what_it_starts_from():
    files = stage_files(PARAMS)
    assert set(files) == {yaml.safe_load(p.read_text()).get("stage") for p in PARAMS.glob("*.yaml")} - {None}
    order = list(files)
    for name, params in stage_params("full", PARAMS).items():
        if params["init_from"]:
            assert order.index(params["init_from"]) < order.index(name)


@pytest.mark.parametrize("name, expected", [
    ("stage1", []),
    ("stage2", ["stage1"]),
    ("stage3", ["stage1", "stage2"]),
    ("ablation_4096_scratch", ["control_2048_scratch"]),  # inherits its control's file, starts from scratch
    ("control_2048_then_4096", ["control_2048_scratch", "stage2"]),
    ("ablation_high_lr", ["stage1", "stage2"]),     # starts from stage 1, inherits stage2.yaml
    ("control_points", ["stage1", "stage2"]),
    ("control_endpoint", ["stage1", "stage2", "stage3"]),
])
def test_upstream_stages_follow_init_from_and_inherit(name, expected):
    assert upstream_stages(PARAMS / f"{name}.yaml") == expected


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "stage: x\n", "b.yaml": "stage: x\n"}, "stage x is named by two params files, {tmp}/a.yaml and {tmp}/b.yaml"),
    ({"a.yaml": "stage: a\ninit_from: nope\n"}, "{tmp}/a.yaml: init_from nope names no stage in {tmp}"),
    ({"a.yaml": "stage: a\ninit_from: a\n"}, "{tmp}/a.yaml: stages start from or inherit each other in a cycle: a -> a"),
    ({"a.yaml": "stage: a\ninit_from: b\n", "b.yaml": "stage: b\ninit_from: a\n"},
     "{tmp}/a.yaml: stages start from or inherit each other in a cycle: a -> b -> a"),
])
def test_a_broken_experiment_graph_is_one_line_naming_the_files(tmp_path, files, message):
    for name in ("base.yaml", "profiles.yaml", "stage1.yaml"):
        (tmp_path / name).write_text((PARAMS / name).read_text())
    for name, text in files.items():
        (tmp_path / name).write_text("inherit: stage1.yaml\n" + text)
    with pytest.raises(ParamsError, match=f"^{re.escape(message.format(tmp=tmp_path))}$"):
        stage_files(tmp_path)
    with pytest.raises(ParamsError, match=f"^{re.escape(message.format(tmp=tmp_path))}$"):
        upstream_stages(tmp_path / "a.yaml")


def test_runs_per_lr_and_seed_and_their_labels():
    params = stage_params("cpu", PARAMS)["ablation_high_lr"]
    runs = stage_runs(params, "r", PARAMS)
    assert len(runs) == len(params["sweep_lr"]) * params["seeds"]
    run = runs[1]
    lr, seed = float(params["sweep_lr"][0]), params["train"]["seed"] + 1
    assert (run.stage, run.lr, run.seed) == ("ablation_high_lr", lr, seed)
    assert run.params["train"]["seed"] == seed and run.params["schedule"]["lr"] == lr
    assert run.dir == Path("r/cpu/ablation_high_lr") / f"lr{lr:g}" / f"seed{seed}"
    assert run.arm == f"ablation_high_lr lr={lr:g}" and run.label == f"ablation_high_lr lr={lr:g} seed={seed}"
    (single,) = stage_runs(stage_params("full", PARAMS)["stage1"], "r", PARAMS)
    assert (single.dir, single.label, single.lr, single.upstream) == (Path("r/full/stage1"), "stage1", None, None)


def test_a_run_starts_from_its_upstream_run_of_the_same_seed(tmp_path):
    stages = stage_params("cpu", PARAMS)
    run = stage_runs(stages["stage2"], tmp_path, PARAMS)[2]
    assert run.upstream == stage_runs(stages["stage1"], tmp_path, PARAMS)[2] and run.upstream.seed == run.seed


def test_a_seed_its_upstream_lacks_starts_from_its_first_whatever_directories_exist(tmp_path):
    folder = tmp_path / "params"
    shutil.copytree(PARAMS, folder)
    stage1 = (folder / "stage1.yaml").read_text()
    (folder / "stage1.yaml").write_text(re.sub(r"(?m)^seeds: \d+", "seeds: 1", stage1))
    stages = stage_params("cpu", folder)
    run = stage_runs(stages["stage2"], tmp_path, folder)[1]
    (tmp_path / "cpu" / "stage1" / f"seed{run.seed}").mkdir(parents=True)  # a stale directory of that seed
    assert run.seed != stages["stage1"]["train"]["seed"]
    assert run.upstream == stage_runs(stages["stage1"], tmp_path, folder)[0]
    assert run.upstream.dir == tmp_path / "cpu" / "stage1"


def test_training_runs_wait_for_their_upstream_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    for profile in ("full", "cpu", "smoke"):
        tasks, chain = pipeline.training_runs(profile)
        stages = stage_params(profile)
        assert set(tasks) == {(run.stage, run.seed) for p in stages.values() for run in stage_runs(p, ".")}
        for (name, seed), after in tasks.items():
            assert after == ([] if not stages[name]["init_from"] else [(stages[name]["init_from"], seed)])
            assert all(chain[a] > chain[(name, seed)] for a in after)


def test_two_runs_of_a_step_shape_not_yet_compiled_do_not_start_at_once():
    """Both trainer processes compiled stage 1's step at the same time at the start of the build:
    a task whose shape is running for the first time waits while another ready task can start,
    later ones of that shape start side by side, and no worker waits for want of another shape."""
    import threading

    def started(tasks, shape):
        order, lock = [], threading.Lock()

        def run(task):
            with lock:
                order.append(task)
        pipeline.run_graph(tasks, run, 2, priority=lambda task: -task[1], shape=shape)
        return order

    tasks = {("s1", 1): [], ("s1", 2): [], ("x", 3): [], ("s1", 4): []}
    by_name = lambda task: task[0]  # noqa: E731
    assert started(tasks, None)[:2] == [("s1", 1), ("s1", 2)]
    assert started(tasks, by_name)[:2] == [("s1", 1), ("x", 3)]
    assert started({("s1", 1): [], ("s1", 2): []}, by_name) == [("s1", 1), ("s1", 2)]  # nothing else to run
    recipes = stage_params("cpu")
    assert pipeline.step_shape(recipes["full_world"]) == pipeline.step_shape(recipes["stage1"])
    assert len({pipeline.step_shape(recipes[name]) for name in ("stage1", "stage2", "stage3", "control_points")}) == 4


def test_the_main_chain_is_the_stages_no_other_stage_file_changes():
    assert list(main_chain(PARAMS)) == ["stage1", "stage2", "stage3"]
    for profile in ("full", "cpu", "smoke"):
        stages = point_stages(profile, PARAMS)
        assert list(stages) == ["stage1", "stage2"] and stages["stage1"]["data"]["points"] < stages["stage2"]["data"]["points"]


def test_every_notebook_is_in_the_table_of_contents_and_reads_what_it_draws(monkeypatch):
    monkeypatch.chdir(ROOT)
    graph = pipeline.notebooks()
    assert set(graph) == {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert {f"book/executed/{name}" for name in graph} <= set(pipeline.toc_pages(ROOT / "_toc.yml"))
    for name, reads in pipeline.stage_notebooks().items():
        assert reads == [s for s in upstream_stages(PARAMS / f"{name}.yaml") if s in graph]
    assert set(graph["results"]) == set(graph) - {"data", "results"}


def test_an_ablation_is_its_params_file_and_a_page_made_from_the_template(tmp_path, monkeypatch):
    """Issue 31's "three files": a new ablation's page is written from the template (its title and
    introduction from the params file's opening comment), the pipeline then executes it beside the
    other pages and the table of contents lists it; an existing page is never overwritten."""
    import nbformat

    shutil.copytree(PARAMS, tmp_path / "params")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copy(ROOT / "_toc.yml", tmp_path / "_toc.yml")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params" / "ablation_no_aux.yaml").write_text(
        "# Ablation: stage 2 without the auxiliary decoder losses. Does the finetune need them?\n"
        "inherit: stage2.yaml\nstage: ablation_no_aux\nloss: {aux: {weight: 0.0}}\n")
    page = pipeline.ablation_page("params/ablation_no_aux.yaml")
    text = "\n".join(cell.source for cell in nbformat.read(page, 4).cells)
    assert "# Ablation: stage 2 without the auxiliary decoder losses\n" in text
    assert "Does the finetune need them?" in text and 'params = "params/ablation_no_aux.yaml"' in text
    assert "<<" not in text
    assert pipeline.notebooks()["ablation_no_aux"] == ["stage1", "stage2"]
    assert "book/executed/ablation_no_aux" in pipeline.toc_pages()
    with pytest.raises(FileExistsError, match="notebooks/ablation_no_aux.ipynb exists"):
        pipeline.ablation_page("params/ablation_no_aux.yaml")
    with pytest.raises(ValueError, match="inherits a stage's file"):
        pipeline.ablation_page("params/stage1.yaml")
