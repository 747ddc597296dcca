"""The predict and evaluate commands: unlabeled scenes, broken GT, and their output files."""

import errno
import json
import re
from pathlib import Path

import numpy as np
import pytest

from s23dr import checkpoint, evaluate, predict
from s23dr.config import load_params
from s23dr.model import Perceiver
from s23dr.schema import GT_FIELDS, MAX_GT_EDGES

PARAMS = Path(__file__).resolve().parents[1] / "params"


@pytest.fixture
def model_path(tmp_path):
    """A checkpoint of an untrained smoke-profile model."""
    params = load_params(PARAMS / "stage1.yaml", "smoke")
    state = {"step": 0, "model": Perceiver(**params["model"]).state_dict(), "inputs": {"params": params}}
    return checkpoint.save(state, tmp_path / "step000000.pt")


@pytest.fixture
def test_scenes(tmp_path, make_scene):
    """A folder of .npz scenes: one without GT fields, one with more GT edges than training takes, one whole."""
    unlabeled = {k: v for k, v in make_scene("unlabeled").items() if k not in GT_FIELDS}
    scenes = [unlabeled, make_scene("with-65-edges", n_edges=MAX_GT_EDGES + 1), make_scene("whole")]
    folder = tmp_path / "test"
    folder.mkdir()
    for scene in scenes:
        np.savez(folder / f"{scene['order_id']}.npz", **scene)
    return folder


def run(command, args, capsys):
    """(exit status, stdout, stderr) of a command's main."""
    status = command.main([*map(str, args), "--device", "cpu"])
    out, err = capsys.readouterr()
    return status, out, err


def test_predict_runs_on_scenes_without_gt_or_with_bad_gt(model_path, test_scenes, tmp_path, capsys):
    out = tmp_path / "submission.json"
    assert run(predict, [model_path, test_scenes, "--out", out], capsys)[0] == 0
    records = json.loads(out.read_text())
    assert [r["order_id"] for r in records] == ["unlabeled", "whole", "with-65-edges"]
    assert [p.name for p in tmp_path.glob(".*")] == [], "no temporary file left"


def test_evaluate_names_the_scene_without_gt(model_path, test_scenes, capsys):
    status, _, err = run(evaluate, [model_path, test_scenes], capsys)
    assert status == 2
    assert re.fullmatch(rf"error: {re.escape(str(test_scenes / 'unlabeled.npz'))}: missing field 'gt_\w+' "
                        r"\(ground truth: training and evaluation need it, predict does not\)\n", err)


@pytest.mark.parametrize("out, message", [
    ("missing/submission.json", "folder {tmp}/missing does not exist"),
    ("", "{tmp} is a folder; name a file"),
])
def test_predict_checks_out_before_inference(model_path, test_scenes, tmp_path, capsys, monkeypatch, out, message):
    monkeypatch.setattr(predict, "submission", lambda *args: pytest.fail("inference ran before --out was checked"))
    status, _, err = run(predict, [model_path, test_scenes, "--out", tmp_path / out], capsys)
    assert status == 2
    assert err.startswith("error: --out ") and message.format(tmp=tmp_path) in err


@pytest.mark.parametrize("out, message", [
    ("step000000.pt", "is the input {tmp}/step000000.pt"),
    ("test/whole.npz", "lies within the input {tmp}/test"),
    ("test/new.npz", "lies within the input {tmp}/test"),  # it would become a scene
])
def test_predict_out_is_never_an_input(model_path, test_scenes, tmp_path, capsys, monkeypatch, out, message):
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setattr(predict, "submission", lambda *args: pytest.fail("inference ran before --out was checked"))
    for source in (model_path, tmp_path):  # a checkpoint, and a run directory (its newest)
        status, _, err = run(predict, [source, test_scenes, "--out", tmp_path / out], capsys)
        assert status == 2 and err == f"error: --out {tmp_path / out} {message.format(tmp=tmp_path)}; name another file\n"
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_evaluate_per_scene_is_never_its_submission(gt_scenes, tmp_path, capsys):
    path = tmp_path / "submission.json"
    path.write_text("[]")
    status, _, err = run(evaluate, [path, gt_scenes, "--per-scene", path], capsys)
    assert status == 2 and err == f"error: --per-scene {path} is the input {path}; name another file\n"
    assert path.read_text() == "[]"


def test_predict_writes_out_atomically(model_path, test_scenes, tmp_path, capsys, monkeypatch):
    out = tmp_path / "submission.json"
    out.write_text("the previous submission")

    def disk_full(records):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(predict.json, "dumps", disk_full)
    status, _, err = run(predict, [model_path, test_scenes, "--out", out], capsys)
    assert status == 2
    assert err.startswith(f"error: cannot write {out}: no space left on the device")
    assert out.read_text() == "the previous submission"
    assert [p.name for p in tmp_path.glob(".*")] == [], "no temporary file left"


def test_evaluate_scores_a_checkpoint_at_its_own_thresholds(tmp_path, test_scenes, monkeypatch):
    """A checkpoint is scored at the thresholds of its params' `eval`, not at fixed ones."""
    params = load_params(PARAMS / "stage1.yaml", "smoke", ["eval.vert_thresh=0.25", "eval.edge_thresh=0.75"])
    state = {"step": 0, "model": Perceiver(**params["model"]).state_dict(), "inputs": {"params": params}}
    path = checkpoint.save(state, tmp_path / "step000000.pt")
    whole = tmp_path / "whole"
    whole.mkdir()
    (test_scenes / "whole.npz").rename(whole / "whole.npz")
    seen = {}
    monkeypatch.setattr(evaluate, "score_scenes", lambda preds, gts, **thresholds: seen.update(thresholds))
    evaluate.score_source(path, whole)
    assert seen == {"vert_thresh": 0.25, "edge_thresh": 0.75, "progress": False}


@pytest.fixture
def gt_scenes(tmp_path, make_scene):
    """A folder of one scene with GT, `whole`."""
    folder = tmp_path / "gt"
    folder.mkdir()
    np.savez(folder / "whole.npz", **make_scene("whole"))
    return folder


GOOD = {"order_id": "whole", "wf_vertices": [[0, 0, 0], [1.5, 0, 0]], "wf_edges": [[0, 1]]}


@pytest.mark.parametrize("records, message", [
    ({"whole": GOOD}, r"not a submission \(a JSON list of \{order_id, wf_vertices, wf_edges\}\), found a dict"),
    ([GOOD, GOOD], "order_id 'whole' appears more than once"),
    ([{"wf_vertices": []}], "record 0 should be a mapping {order_id, wf_vertices, wf_edges} with a string order_id"),
    ([{**GOOD, "order_id": 7}], "record 0 should be a mapping .* with a string order_id"),
    ([{k: v for k, v in GOOD.items() if k != "wf_edges"}], "scene 'whole': missing field 'wf_edges'"),
    ([{**GOOD, "wf_vertices": [[0, 0], [1, 0]]}],
     r"scene 'whole': field 'wf_vertices' should be a list of \[3\] numbers, found shape \(2, 2\), dtype int64"),
    ([{**GOOD, "wf_vertices": [[0, 0, 0], [1, 0]]}], "scene 'whole': field 'wf_vertices' .*, found a ragged list"),
    ([{**GOOD, "wf_vertices": [["0", "0", "0"], ["1", "0", "0"]]}], "scene 'whole': field 'wf_vertices' .*, dtype <U1"),
    ([{**GOOD, "wf_vertices": [[0, 0, 0], [float("nan"), 0, 0]]}], "scene 'whole': field 'wf_vertices' holds NaN or inf"),
    ([{**GOOD, "wf_edges": [[0.0, 1.0]]}],
     r"scene 'whole': field 'wf_edges' should be a list of \[2\] integer vertex indices, found shape \(1, 2\), dtype float64"),
    ([{**GOOD, "wf_edges": [[0, 2]]}], r"scene 'whole': field 'wf_edges' should index the 2 vertices \(0 to 1\), found 0 to 2"),
    ([{**GOOD, "wf_vertices": [[0, 0, 0]] * 10_001}], "scene 'whole': field 'wf_vertices' holds 10001 entries, more than 10000"),
    ([{**GOOD, "wf_edges": [[0, 1]] * 10_001}], "scene 'whole': field 'wf_edges' holds 10001 entries, more than 10000"),
    ([{**GOOD, "order_id": "other"}], "no prediction for 1 scenes of .*gt, e.g. whole; "
                                      "1 predicted scenes are not in .*gt, e.g. other"),
])
def test_evaluate_checks_a_submission_field_by_field(gt_scenes, tmp_path, capsys, records, message):
    """A bad submission is one line naming the file, the scene and the field; nothing is scored."""
    path = tmp_path / "submission.json"
    path.write_text(json.dumps(records))
    status, out, err = run(evaluate, [path, gt_scenes], capsys)
    assert status == 2 and out == ""
    assert re.fullmatch(rf"error: {re.escape(str(path))}: {message}.*\n", err) and err.count("\n") == 1


def test_evaluate_scores_a_good_submission_with_empty_fields(gt_scenes, tmp_path, capsys):
    path = tmp_path / "submission.json"
    path.write_text(json.dumps([{"order_id": "whole", "wf_vertices": [], "wf_edges": []}]))
    status, out, _ = run(evaluate, [path, gt_scenes], capsys)
    assert status == 0 and out.startswith("1 scenes: HSS 0.0000")


def test_predict_takes_a_run_directory_for_its_newest_checkpoint(model_path, test_scenes, tmp_path, capsys):
    out = tmp_path / "submission.json"
    assert run(predict, [model_path.parent, test_scenes, "--out", out], capsys)[0] == 0
    assert len(json.loads(out.read_text())) == 3
    empty = tmp_path / "empty_run"
    empty.mkdir()
    status, _, err = run(predict, [empty, test_scenes, "--out", out], capsys)
    assert status == 2
    assert err == f"error: {empty}: a folder without checkpoints (step*.pt); name a checkpoint or a run directory that holds one\n"


@pytest.mark.parametrize("command", [predict, evaluate])
@pytest.mark.parametrize("device, message", [
    ("tpu", "expected cpu, cuda or cuda:N"),
    ("cuda:99", "(CUDA is not available on this machine; use --device cpu|this machine has \\d CUDA device)"),
])
def test_an_unusable_device_is_one_line(command, device, message, model_path, test_scenes, tmp_path, capsys):
    status = command.main([str(model_path), str(test_scenes), "--device", device])
    err = capsys.readouterr().err
    assert status == 2 and re.fullmatch(rf"error: --device {device}: {message}.*\n", err)
