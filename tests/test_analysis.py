"""The book's layer behind the notebooks: departures, the probes, the pages' tables, the notebooks' execution."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from s23dr.config import load_params
from s23dr.inference import score_predictions
from s23dr.analysis.probes import threshold_sweep

PARAMS = Path(__file__).resolve().parents[1] / "params"


def test_departures_name_the_synthetic_world_but_not_at_full():
    from s23dr import checkpoint
    from s23dr.config import load_params
    from s23dr.analysis.recipes import BASELINE_RECIPE, departures

    path = PARAMS / "stage1.yaml"
    cpu = departures(load_params(path, "cpu"), path)
    assert cpu.loc["loss.matching", "this profile"] == "hungarian"
    assert cpu.loc["data.synthetic.world.noise", BASELINE_RECIPE] == "real data"
    assert departures(load_params(path, "full"), path).empty
    # nothing a profile changes is left out: every differing key, the data sizes that follow
    flat = lambda profile: checkpoint.flatten(load_params(path, profile))  # noqa: E731
    changed = {k for k in flat("cpu").keys() | flat("full").keys() if flat("cpu").get(k) != flat("full").get(k)}
    assert changed - {"profile"} <= set(cpu.index)
    assert {"train.cpu_precision", "train.eval_every", "eval.max_scenes", "data.synthetic.train",
            "loss.aux.weight", "passes per training scene"} <= set(cpu.index)
    # the full-world run departs in its data even at full: the baseline trained on the real data
    world = PARAMS / "full_world.yaml"
    assert departures(load_params(world, "full"), world).loc["data.synthetic.world.extras", "this profile"] is True


def test_nearest_query_measures_the_farther_end_under_the_better_pairing():
    import numpy as np

    from s23dr.analysis.probes import nearest_query

    gt = np.array([[[0, 0, 0], [1, 0, 0]], [[0, 2, 0], [0, 3, 0]]], float)
    queries = np.array([[[1, 0, 0], [0, 0, 0]],            # GT 0 exactly, endpoints swapped
                        [[0, 2, 0.1], [0, 3.3, 0]],        # GT 1: 0.1 and 0.3 off
                        [[5, 5, 5], [6, 5, 5]]], float)    # far from both
    distance, index = nearest_query(queries, gt)
    assert index.tolist() == [0, 1]
    assert np.allclose(distance, [0.0, 0.3])


def test_a_saved_benchmark_result_makes_the_notebooks_stale(tmp_path, monkeypatch):
    """The Results notebook tabulates benchmarks/results/: a new run there must re-execute it."""
    from s23dr.pipeline import notebook_inputs

    for path in ("notebooks/data.ipynb", "params/base.yaml", "benchmarks/results/a/run.json"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("{}")
    monkeypatch.chdir(tmp_path)
    before = notebook_inputs("data", "cpu", "runs", [])
    (tmp_path / "benchmarks/results/a/other.json").write_text("{}")
    assert notebook_inputs("data", "cpu", "runs", []) != before


def test_threshold_sweep_scores_as_each_threshold_alone(make_scene):
    """The sweep scores a scene once per set of kept queries; its means must be those of
    scoring every threshold from scratch."""
    rng = np.random.default_rng(0)
    scenes = [make_scene(f"s{i}", n_edges=4, seed=i) for i in range(4)]
    segments = np.stack([s["gt_segments"][[0, 1, 2, 3, 0, 1]] for s in scenes])
    segments = (segments + rng.normal(0, 0.01, segments.shape)).astype(np.float32)
    conf = rng.choice([0.05, 0.35, 0.95], size=segments.shape[:2]).astype(np.float32)
    params = load_params(PARAMS / "stage1.yaml", "smoke")
    thresholds = [0.1, 0.2, 0.3, 0.5, 0.7]
    sweep = threshold_sweep(scenes, segments, conf, params, thresholds)
    for t in thresholds:
        at = {**params, "eval": {**params["eval"], "conf_threshold": t}}
        mean = score_predictions(scenes, segments, conf, at)[1].mean
        assert list(sweep.loc[t]) == pytest.approx([mean.hss, mean.f1, mean.iou], abs=1e-12)


def test_notebooks_execute_side_by_side_after_what_they_read(tmp_path, monkeypatch):
    """Two at a time, each after the notebooks it reads; a second call finds every notebook current."""
    import subprocess
    import threading
    import time

    from s23dr import pipeline

    events, lock = [], threading.Lock()

    def papermill(cmd, env, stdout, stderr):
        name = Path(cmd[3]).stem
        with lock:
            events.append(("start", name))
        time.sleep(0.2)  # long enough that a loaded machine still starts the second beside it
        Path(cmd[4]).write_text("{}")
        with lock:
            events.append(("end", name))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.chdir(PARAMS.parent)
    monkeypatch.setattr(pipeline, "EXECUTED", tmp_path)
    monkeypatch.setattr(pipeline.subprocess, "run", papermill)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    pipeline.execute_notebooks("smoke", runs=tmp_path / "runs")

    at = {event: i for i, event in enumerate(events)}
    assert {name for _, name in events} == set(pipeline.notebooks())
    for name, reads in pipeline.notebooks().items():
        assert all(at[("end", read)] < at[("start", name)] for read in reads), name
    running = [sum(+1 if kind == "start" else -1 for kind, _ in events[:i + 1]) for i in range(len(events))]
    assert max(running) == 2

    events.clear()
    pipeline.execute_notebooks("smoke", runs=tmp_path / "runs")
    assert events == []


def test_a_notebook_seed_that_is_no_integer_is_one_line():
    from s23dr.config import ParamsError
    from s23dr.analysis.notebook import notebook_params

    with pytest.raises(ParamsError, match="notebook parameter seed should be an integer .*got 'abc'"):
        notebook_params(PARAMS / "stage1.yaml", "smoke", seed="abc")
    assert notebook_params(PARAMS / "stage1.yaml", "smoke", seed="12")["train"]["seed"] == 12


def test_train_stage_names_the_runs_it_trained(tmp_path, monkeypatch):
    """The results page says which runs it had to train (run_summaries.train_stage's labels)."""
    import os

    from s23dr.analysis import run_summaries

    finals = [tmp_path / f"seed{i}.pt" for i in range(3)]
    for path in finals:
        path.write_text("made before")
        os.utime(path, (0, 0))

    def run_stage(*args, **kwargs):
        finals[1].write_text("trained now")
        return finals

    monkeypatch.setattr(run_summaries, "run_stage", run_stage)
    trained = run_summaries.train_stage(load_params(PARAMS / "stage2.yaml", "smoke"), tmp_path)
    assert trained[0] == finals and [run.label for run in trained[1]] == ["stage2 seed=354"]


def test_notebook_parameters_are_checked_for_name_and_type():
    """A misspelt papermill parameter names the closest; a wrong type names the parameter and the type."""
    from s23dr.analysis.notebook import check_parameters
    from s23dr.config import ParamsError

    good = {"profile": "smoke", "params": "params/stage1.yaml", "data": None, "runs": "runs", "init": None,
            "device": None, "seed": None, "In": ["", "import os\nprofile = 'cpu'", '# Parameters\nprofile = "smoke"\n']}
    check_parameters(good)
    with pytest.raises(ParamsError, match=r"^notebook parameter profil is not one of this notebook's; did you mean profile\?$"):
        check_parameters({**good, "profil": "smoke", "In": [*good["In"], '# Parameters\nprofil = "smoke"\n']})
    for name, value, what in (("profile", 3, "a profile name"), ("runs", 1.5, "a folder path"),
                              ("params", None, "a params file path"), ("seed", True, "an integer or None")):
        with pytest.raises(ParamsError, match=rf"^notebook parameter {name} should be {what}.*, got {value!r}$"):
            check_parameters({**good, name: value})


def test_every_notebook_checks_the_parameters_of_its_parameters_cell():
    """Each notebook's parameters cell defines `notebook.PARAMETERS`, and the next code cell checks them."""
    import ast
    import json

    from s23dr.analysis.notebook import PARAMETERS

    for path in sorted((PARAMS.parent / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        first = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
        tree = ast.parse("".join(cells[first]["source"]))
        assert [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets] == list(PARAMETERS), path
        assert "notebook.check_parameters(globals())" in "".join(cells[first + 1]["source"]), path


def code_lines(cell):
    """A code cell's lines of code: neither empty nor a comment."""
    return [line for line in "".join(cell["source"]).splitlines() if line.strip() and not line.strip().startswith("#")]


def test_every_notebook_is_narrative_and_a_few_library_calls():
    """A notebook's logic lives in the library, where it is tested: at most 45 lines of code each."""
    import json

    for path in sorted((PARAMS.parent / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert sum(len(code_lines(c)) for c in cells) <= 45, path


def test_nearest_table_counts_a_segment_within_the_threshold_and_confident_apart():
    from s23dr.analysis.probes import nearest_table

    metres, conf = np.array([0.1, 0.3, 2.0, 0.2]), np.array([0.9, 0.1, 0.9, 0.6])
    row = nearest_table({"a": (metres, conf)}, vert_thresh=0.5, conf_threshold=0.5).loc["a"]
    assert list(row) == pytest.approx([0.25, 0.75, 0.5])


def test_best_and_worst_pick_each_scene_once_best_first():
    from types import SimpleNamespace

    from s23dr.analysis.probes import best_and_worst

    scores = [SimpleNamespace(hss=h) for h in (0.5, 0.9, 0.1, 0.9, 0.3)]
    assert best_and_worst(scores) == [(3, "best"), (1, "best"), (2, "worst"), (4, "worst")]  # a tie: the later first
    assert best_and_worst(scores[:3]) == [(1, "best"), (0, "best"), (2, "worst")]  # three scenes: none twice


def test_confidence_ceiling_falls_with_the_cost_and_names_where_it_passes_the_threshold():
    from s23dr.analysis.probes import confidence_ceiling

    params = load_params(PARAMS / "stage1.yaml", "full")
    ceiling, cost = confidence_ceiling(params, 0.5)
    assert ceiling.index[0] == 0 and ceiling.is_monotonic_decreasing and 0 < ceiling.iloc[0] <= 1
    assert (ceiling[ceiling.index <= cost] > 0.5).all() and (ceiling[ceiling.index > cost + 0.05] <= 0.5).all()
    assert confidence_ceiling(params, 1.0)[1] == 0.0  # no target reaches a threshold of 1


def test_the_data_page_draws_scenes_every_sampling_holds_and_tabulates_their_coverage(make_scene):
    from s23dr.analysis.data_page import common_scenes, coverage_table

    low = [make_scene("a"), make_scene("b"), make_scene("c")]
    high = [make_scene("c", seed=1), make_scene("a", seed=1), make_scene("d", seed=1)]
    pairs = common_scenes({128: low, 256: high})
    assert [(s["order_id"], n) for s, n in pairs] == [("c", 128), ("c", 256), ("a", 128), ("a", 256)]
    assert pairs[1][0] is high[0]
    baseline = {"structural_coverage": {"points_2048": 0.4, "points_4096": 0.7}}
    coverage, table = coverage_table({128: low, 256: high}, baseline)
    assert list(coverage) == [128, 256] and all(0 <= c <= 1 for c in coverage.values())
    assert table.loc[256, "the baseline's \"structural points\""] == 0.7 and table.loc[128, "baseline's points"] == 2048


def test_run_summaries_read_the_last_evaluation_and_the_training_time():
    from s23dr.analysis.run_summaries import all_benchmarks, final_ratios, summary

    params = {"schedule": {"start_step": 10}, "train": {"batch_size": 4}}
    rows = [{"step": 0, "kind": "run"}, {"step": 20, "kind": "train", "samples_per_s": 2.0},
            {"step": 20, "kind": "eval", "hss": 0.1, "f1": 0.2, "iou": 0.3, "ratio": 1.0},
            {"step": 30, "kind": "train", "samples_per_s": 4.0},
            {"step": 30, "kind": "eval", "hss": 0.4, "f1": 0.5, "iou": 0.6, "ratio": 1.2}]
    assert summary(rows, params) == pytest.approx({"hss": 0.4, "f1": 0.5, "iou": 0.6, "ratio": 1.2, "steps": 30,
                                                   "minutes": (10 * 4 / 2 + 10 * 4 / 4) / 60})
    table = pd.DataFrame({"hss": [0.2, 0.4], "f1": [0.3, 0.5], "iou": [0.1, 0.3], "ratio": [1.0, 1.5]},
                         index=pd.Index([1, 2], name="seed"))
    numbers = {name: {name: table} for name in ("stage1", "stage2", "stage3")}
    recipes = {name: {"data": {"points": 128}} for name in numbers}
    baseline = {"benchmarks": [{"model": "theirs", "points": 2048, "hss": 0.5, "f1": 0.6, "iou": 0.4}]}
    frame = all_benchmarks(recipes, numbers, baseline, "smoke")
    assert list(frame.index) == ["baseline: theirs"] + [f"ours (smoke): {n}, mean of 2" for n in numbers]
    assert frame.loc["ours (smoke): stage2, mean of 2", "HSS"] == pytest.approx(0.3)
    assert final_ratios(numbers).loc["stage3"].tolist() == [1.0, 1.5]


def test_the_overfitting_sweep_reads_each_arm_at_each_size_and_batch(tmp_path):
    """Claim 1's regime as the book tabulates it, from every sweep saved in the folder: the batch
    (from the sweep's params), the passes, the last and highest ratio, per arm and size."""
    import json

    from s23dr.analysis.benchmark_tables import overfitting_table

    evals = [{"step": 1, "hss": 0.0, "ratio": 1.3}, {"step": 2, "hss": 0.1, "ratio": 1.1}]
    arms = (("ablation_4096_scratch", 1024), ("stage1", 512))
    for name, n, batch in (("a", 80, 16), ("b", 40, 8)):
        runs = [{"stage": stage, "train_scenes": n, "points": points, "passes": 1250 * batch / n, "evals": evals}
                for stage, points in arms]
        params = {stage: {"train": {"batch_size": batch}} for stage, _ in arms}
        (tmp_path / f"{name}.json").write_text(json.dumps({"runs": runs, "params": params}))
    table = overfitting_table(tmp_path)
    assert list(table.index) == [(80, 16, "stage1"), (80, 16, "ablation_4096_scratch"),
                                 (40, 8, "stage1"), (40, 8, "ablation_4096_scratch")]
    row = table.loc[(40, 8, "stage1")]
    assert (row["passes per scene"], row["ratio at the end"], row["highest ratio"], row["HSS at the end"]) == (250, 1.1, 1.3, 0.1)


def test_training_keeps_one_compile_cache_per_cpu_kernel_class(monkeypatch):
    """A step compiled under one ATEN_CPU_CAPABILITY was served from inductor's cache to a process
    under another, which then failed; the trainer's command line and the pipeline's trainings and
    notebooks get a cache per class, and a cache the user named is kept."""
    import os

    import torch

    from s23dr import loop

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    loop.separate_compile_caches()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"].endswith(f"{os.sep}avx2")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")
    loop.separate_compile_caches()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/elsewhere"


def test_the_validation_size_table_reads_each_pair_at_each_size(tmp_path):
    import json

    from s23dr.analysis.benchmark_tables import validation_size_table

    rows = [{"a": "stage2", "b": "control_points", "metric": "hss", "scenes": n, "seeds": [1, 2, 3],
             "differences": [0.1, 0.2, 0.3], "sd over seeds": sd} for n, sd in ((128, 0.02), (512, 0.019))]
    (tmp_path / "pairs.json").write_text(json.dumps({"rows": rows}))
    table = validation_size_table(tmp_path / "pairs.json")
    assert table.loc[("hss of stage2 − control_points", 512), "sd over seeds"] == 0.019
    assert table.loc[("hss of stage2 − control_points", 128), "seeds"] == 3


def test_a_training_that_fails_in_a_trainer_process_is_one_line_naming_it_and_its_log(tmp_path, monkeypatch):
    """`pipeline.prepare_runs` calls the trainer's command line in its trainer processes with the
    output in a log (`logged`); a failure stops the job naming the run, the log and its last line,
    and a follow-up that raises is a failure with its traceback in its log."""
    from s23dr import pipeline

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # the trainer's command line sets it
    log = tmp_path / "stage1-seed353.log"
    assert pipeline.logged(log, pipeline.train_main, [str(tmp_path / "missing.yaml"), "--profile", "smoke"]) == 2
    error = str(pipeline.failed("training stage1 (seed 353)", log))
    assert error.startswith(f"training stage1 (seed 353) failed ({log}): error: ") and "missing.yaml" in error
    follow = tmp_path / "stage1-seed353-scored.log"
    assert pipeline.logged(follow, pipeline.follow_up, pipeline.SCORED, "stage1", 353, "smoke", str(tmp_path / "none")) == 1
    assert "FileNotFoundError" in follow.read_text() and "no final checkpoint" in follow.read_text()
