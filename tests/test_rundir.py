"""The one staleness rule, and each product that follows it: a training run's final checkpoint,
a synthetic dataset, an executed notebook. Each goes stale when one of its inputs changes
(params, the code version, what it is made from) and stays current when none does."""

import re
import subprocess
from pathlib import Path

import pytest

from s23dr import checkpoint, pipeline, rundir, synthetic_data
from s23dr.config import load_params
from s23dr.rundir import MetricsLog
from s23dr.train import is_current

PARAMS = Path(__file__).resolve().parents[1] / "params"


def test_a_product_is_current_when_the_stamp_beside_it_is_that_of_its_inputs(tmp_path):
    product, inputs = tmp_path / "step000010.pt", {"params": {"lr": 1e-3}, "code": "0.1+abc", "upstream": None}
    assert not rundir.is_current(product, inputs)  # neither product nor stamp
    product.write_text("made")
    assert not rundir.is_current(product, inputs)  # no stamp: killed before it was complete
    rundir.mark_current(product, inputs)
    assert rundir.stamp_file(product) == tmp_path / "step000010.inputs"
    assert rundir.is_current(product, {"upstream": None, "code": "0.1+abc", "params": {"lr": 1e-3}})
    assert not rundir.is_current(product, {**inputs, "params": {"lr": 2e-3}})
    product.unlink()
    assert not rundir.is_current(product, inputs)  # a stamp alone is no product
    product.write_text("made again")
    rundir.mark_stale(product)
    assert not rundir.is_current(product, inputs) and not list(tmp_path.glob(".*tmp*"))


def test_a_run_goes_stale_with_its_params_code_or_upstream_run(tmp_path, monkeypatch):
    """What `train.run_stage` retrains: the loop stamps a run's final checkpoint with the inputs it holds."""
    params = load_params(PARAMS / "stage2.yaml", "smoke")
    init = checkpoint.save({"step": 25, "model": {}, "inputs": checkpoint.inputs_of(load_params(
        PARAMS / "stage1.yaml", "smoke"))}, tmp_path / "up" / "step000025.pt")
    final = checkpoint.save({"step": 27, "model": {}, "inputs": checkpoint.inputs_of(params, checkpoint.load(init))},
                            checkpoint.path_for(tmp_path / "run", 27))
    assert not is_current(params, tmp_path / "run", init)  # not stamped: not evaluated yet
    rundir.mark_current(final, checkpoint.load(final)["inputs"])
    assert is_current(params, tmp_path / "run", init)
    assert not is_current(load_params(PARAMS / "stage2.yaml", "smoke", ["schedule.lr=0.01"]), tmp_path / "run", init)
    other = load_params(PARAMS / "stage1.yaml", "smoke", ["train.seed=9"])
    checkpoint.save({"step": 25, "model": {}, "inputs": checkpoint.inputs_of(other)}, init)
    assert not is_current(params, tmp_path / "run", init)  # its upstream run was made anew
    checkpoint.save({"step": 25, "model": {}, "inputs": checkpoint.inputs_of(load_params(
        PARAMS / "stage1.yaml", "smoke"))}, init)
    assert is_current(params, tmp_path / "run", init)
    monkeypatch.setattr(rundir, "__version__", "99")
    assert not is_current(params, tmp_path / "run", init)


def test_a_synthetic_dataset_goes_stale_with_its_sizes_or_generator(tmp_path, monkeypatch):
    made = []

    def build_dataset(root, n_train, n_val, points, seed, world):
        made.append(points)
        for p in points:
            (Path(root) / f"sampled_{p}").mkdir(parents=True, exist_ok=True)
        return {p: Path(root) / f"sampled_{p}" for p in points}

    def stages(train=32):
        return {"stage1": load_params(PARAMS / "stage1.yaml", "smoke", [
            f"data.synthetic.root={tmp_path}", f"data.synthetic.train={train}"])}

    monkeypatch.setattr(synthetic_data, "build_dataset", build_dataset)
    monkeypatch.setattr(pipeline, "stage_params", lambda profile: stages())
    pipeline.build_data("smoke")
    pipeline.build_data("smoke")
    assert made == [(128,)]
    assert (tmp_path / "sampled_128.inputs").is_file()
    monkeypatch.setattr(pipeline, "stage_params", lambda profile: stages(train=40))
    pipeline.build_data("smoke")
    assert made == [(128,), (128,)]
    monkeypatch.setattr(rundir, "__version__", "99")
    pipeline.build_data("smoke")
    assert made == [(128,), (128,), (128,)]


def test_a_notebook_goes_stale_with_its_source_code_or_a_notebook_it_reads(tmp_path, monkeypatch):
    executed = []

    def papermill(cmd, env, stdout, stderr):
        executed.append(Path(cmd[3]).stem)
        Path(cmd[4]).write_text("{}")
        return subprocess.CompletedProcess(cmd, 0)

    for path in ("notebooks/a.ipynb", "notebooks/b.ipynb", "params/base.yaml"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "EXECUTED", tmp_path / "executed")
    monkeypatch.setattr(pipeline, "notebooks", lambda: {"a": [], "b": ["a"]})
    monkeypatch.setattr(pipeline.subprocess, "run", papermill)

    def execute():
        executed.clear()
        pipeline.execute_notebooks("smoke", runs="runs")
        return executed

    assert execute() == ["a", "b"]
    assert execute() == []
    (tmp_path / "notebooks/b.ipynb").write_text("b, edited")
    assert execute() == ["b"]
    (tmp_path / "notebooks/a.ipynb").write_text("a, edited")
    assert execute() == ["a", "b"]  # b reads a
    (tmp_path / "params/base.yaml").write_text("edited")
    assert execute() == ["a", "b"]
    monkeypatch.setattr(rundir, "__version__", "99")
    assert execute() == ["a", "b"]



def test_a_torn_last_log_line_is_dropped_with_a_warning_and_any_other_bad_line_named(tmp_path):
    log = tmp_path / MetricsLog.FILE
    log.write_text('{"step": 1, "kind": "train"}\n{"step": 2, "kind": "train"}\n{"step": 3, "ki')
    with pytest.warns(UserWarning, match=rf"^{re.escape(str(log))}:3: a torn last line"):
        assert [r["step"] for r in MetricsLog.read(log)] == [1, 2]
    with pytest.warns(UserWarning):  # a resumed run keeps the rows and continues
        MetricsLog(log, resume_step=2).write({"step": 3, "kind": "train"})
    assert [r["step"] for r in MetricsLog.read(log)] == [1, 2, 3]
    for bad in ('{"step": 1, "ki\n{"step": 2, "kind": "train"}\n', '{"step": 1, "kind": "train"}\n7\n{"step": 2}\n'):
        log.write_text(bad)
        with pytest.raises(ValueError, match=rf"^{re.escape(str(log))}:[12]: not a metrics row"):
            MetricsLog.read(log)


def test_differences_names_the_changed_keys_but_those_ignored_and_under_them():
    old = {"train": {"seed": 1, "lr": 0.1}, "data": {"points": 1024}, "stage": "stage1"}
    new = {"train": {"seed": 2, "lr": 0.2}, "data": {"points": 4096, "val": "x"}, "stage": "stage2"}
    assert checkpoint.differences(old, new) == ["data.points", "data.val", "stage", "train.lr", "train.seed"]
    assert checkpoint.differences(old, new, ("stage", "train.seed", "data")) == ["train.lr"]


def test_the_metrics_log_picks_its_rows_by_kind(tmp_path):
    rows = [{"step": 0, "kind": "run", "threads": 1}, {"step": 1, "kind": "train"}, {"step": 2, "kind": "eval"},
            {"step": 2, "kind": "train"}, {"step": 2, "kind": "run", "threads": 2}]
    assert [r["step"] for r in MetricsLog.trains(rows)] == [1, 2] and MetricsLog.evals(rows) == [rows[2]]
    assert MetricsLog.run_row(rows) == rows[0] and MetricsLog.run_row(rows[1:3]) is None
    log = MetricsLog(tmp_path / MetricsLog.FILE)
    for row in rows:
        log.write(row)
    assert log.evaluated(2) and not log.evaluated(1)
