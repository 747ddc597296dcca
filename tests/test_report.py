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
