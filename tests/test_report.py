"""The stage report: which stages a page draws beside its own comes from params alone."""

from pathlib import Path

import pytest

from s23dr.report import upstream_stages

PARAMS = Path(__file__).resolve().parents[1] / "params"


@pytest.mark.parametrize("name, expected", [
    ("stage1", []),
    ("stage2", ["stage1"]),
    ("stage3", ["stage1", "stage2"]),
    ("ablation_4096_scratch", ["stage1"]),          # inherits stage1.yaml, starts from scratch
    ("ablation_high_lr", ["stage1", "stage2"]),     # starts from stage 1, inherits stage2.yaml
])
def test_upstream_stages_follow_init_from_and_inherit(name, expected):
    for profile in ("full", "smoke"):
        assert upstream_stages(PARAMS / f"{name}.yaml", profile) == expected


def test_stage_chains_train_side_by_side_only_what_does_not_depend(monkeypatch):
    from s23dr.pipeline import stage_chains

    monkeypatch.chdir(PARAMS.parent)
    for profile in ("full", "cpu", "smoke"):
        assert stage_chains(profile) == [["stage1", "stage2", "stage3", "ablation_high_lr"],
                                         ["ablation_4096_scratch"], ["full_world"]]


def test_departures_name_the_synthetic_world_but_not_at_full():
    from s23dr.config import load_params
    from s23dr.report import departures

    path = PARAMS / "stage1.yaml"
    cpu = departures(load_params(path, "cpu"), path)
    assert cpu.loc["loss.matching", "this profile"] == "hungarian"
    assert cpu.loc["data.synthetic.world.noise", "seed's recipe"] == "real data"
    assert departures(load_params(path, "full"), path).empty
    # the full-world run departs in its data even at full: the seed trained on the real data
    world = PARAMS / "full_world.yaml"
    assert departures(load_params(world, "full"), world).loc["data.synthetic.world.extras", "this profile"] is True


def test_nearest_query_measures_the_farther_end_under_the_better_pairing():
    import numpy as np

    from s23dr.report import nearest_query

    gt = np.array([[[0, 0, 0], [1, 0, 0]], [[0, 2, 0], [0, 3, 0]]], float)
    queries = np.array([[[1, 0, 0], [0, 0, 0]],            # GT 0 exactly, endpoints swapped
                        [[0, 2, 0.1], [0, 3.3, 0]],        # GT 1: 0.1 and 0.3 off
                        [[5, 5, 5], [6, 5, 5]]], float)    # far from both
    distance, index = nearest_query(queries, gt)
    assert index.tolist() == [0, 1]
    assert np.allclose(distance, [0.0, 0.3])


def test_a_saved_benchmark_result_makes_the_notebooks_stale(tmp_path, monkeypatch):
    """The Results notebook tabulates benchmarks/results/: a new run there must re-execute it."""
    from s23dr.pipeline import inputs_hash

    for path in ("notebooks/data.ipynb", "params/base.yaml", "lib/s23dr/model.py", "benchmarks/results/a/run.json"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("{}")
    monkeypatch.chdir(tmp_path)
    before = inputs_hash("data", "cpu", "runs", {})
    (tmp_path / "benchmarks/results/a/other.json").write_text("{}")
    assert inputs_hash("data", "cpu", "runs", {}) != before
