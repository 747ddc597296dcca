"""The report behind the notebooks: departures, the threshold sweep, the notebooks' execution."""

from pathlib import Path

import numpy as np
import pytest

from s23dr.config import load_params
from s23dr.inference import score_predictions
from s23dr.analysis.report import threshold_sweep

PARAMS = Path(__file__).resolve().parents[1] / "params"


def test_departures_name_the_synthetic_world_but_not_at_full():
    from s23dr import checkpoint
    from s23dr.config import load_params
    from s23dr.analysis.report import departures

    path = PARAMS / "stage1.yaml"
    cpu = departures(load_params(path, "cpu"), path)
    assert cpu.loc["loss.matching", "this profile"] == "hungarian"
    assert cpu.loc["data.synthetic.world.noise", "seed's recipe"] == "real data"
    assert departures(load_params(path, "full"), path).empty
    # nothing a profile changes is left out: every differing key, the data sizes that follow
    flat = lambda profile: checkpoint.flatten(load_params(path, profile))  # noqa: E731
    changed = {k for k in flat("cpu").keys() | flat("full").keys() if flat("cpu").get(k) != flat("full").get(k)}
    assert changed - {"profile"} <= set(cpu.index)
    assert {"train.cpu_precision", "train.eval_every", "eval.max_scenes", "data.synthetic.train",
            "loss.aux.weight", "passes per training scene"} <= set(cpu.index)
    # the full-world run departs in its data even at full: the seed trained on the real data
    world = PARAMS / "full_world.yaml"
    assert departures(load_params(world, "full"), world).loc["data.synthetic.world.extras", "this profile"] is True


def test_nearest_query_measures_the_farther_end_under_the_better_pairing():
    import numpy as np

    from s23dr.analysis.report import nearest_query

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
    """Two at a time, each after the notebooks it reads, the ALONE ones first with nothing
    beside them; a second call finds every notebook current."""
    import subprocess
    import threading
    import time

    from s23dr import pipeline

    events, lock = [], threading.Lock()

    def papermill(cmd, env, stdout, stderr):
        name = Path(cmd[3]).stem
        with lock:
            events.append(("start", name))
        time.sleep(0.02)
        Path(cmd[4]).write_text("{}")
        with lock:
            events.append(("end", name))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.chdir(PARAMS.parent)
    monkeypatch.setattr(pipeline, "EXECUTED", tmp_path)
    monkeypatch.setattr(pipeline.subprocess, "run", papermill)
    monkeypatch.setattr(pipeline.torch, "get_num_threads", lambda: 2)
    pipeline.execute_notebooks("smoke", runs=tmp_path / "runs")

    at = {event: i for i, event in enumerate(events)}
    assert {name for _, name in events} == set(pipeline.notebooks())
    for name, reads in pipeline.notebooks().items():
        assert all(at[("end", read)] < at[("start", name)] for read in reads), name
    alone = [event for name in pipeline.ALONE for event in (("start", name), ("end", name))]
    assert events[:len(alone)] == alone
    running = [sum(+1 if kind == "start" else -1 for kind, _ in events[:i + 1]) for i in range(len(events))]
    assert max(running) == 2

    events.clear()
    pipeline.execute_notebooks("smoke", runs=tmp_path / "runs")
    assert events == []


def test_a_notebook_seed_that_is_no_integer_is_one_line():
    from s23dr.config import ParamsError
    from s23dr.analysis.report import notebook_params

    with pytest.raises(ParamsError, match="notebook parameter seed should be an integer .*got 'abc'"):
        notebook_params(PARAMS / "stage1.yaml", "smoke", seed="abc")
    assert notebook_params(PARAMS / "stage1.yaml", "smoke", seed="12")["train"]["seed"] == 12


def test_train_stage_names_the_runs_it_trained(tmp_path, monkeypatch):
    """The results page says which runs it had to train (report.train_stage's labels)."""
    import os

    from s23dr.analysis import report

    finals = [tmp_path / f"seed{i}.pt" for i in range(3)]
    for path in finals:
        path.write_text("made before")
        os.utime(path, (0, 0))

    def run_stage(*args, **kwargs):
        finals[1].write_text("trained now")
        return finals

    monkeypatch.setattr(report, "run_stage", run_stage)
    assert report.train_stage(load_params(PARAMS / "stage2.yaml", "smoke"), tmp_path) == (finals, ["stage2 seed=354"])


def test_notebook_parameters_are_checked_for_name_and_type():
    """A misspelt papermill parameter names the closest; a wrong type names the parameter and the type."""
    from s23dr.analysis.report import check_parameters
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
    """Each notebook's parameters cell defines `report.PARAMETERS`, and the next code cell checks them."""
    import ast
    import json

    from s23dr.analysis.report import PARAMETERS

    for path in sorted((PARAMS.parent / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        first = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
        tree = ast.parse("".join(cells[first]["source"]))
        assert [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets] == list(PARAMETERS), path
        assert "report.check_parameters(globals())" in "".join(cells[first + 1]["source"]), path
