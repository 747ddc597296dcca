"""Params: inheritance, profiles, overrides, and the errors for bad ones."""

import math
import re
from pathlib import Path

import pytest

from s23dr.config import CHOICES, LIMITS, ParamsError, load_params, read_yaml

PARAMS = Path(__file__).resolve().parents[1] / "params"
STAGES = sorted(path.stem for path in PARAMS.glob("*.yaml") if read_yaml(path).get("stage"))


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("profile", ["full", "cpu", "smoke"])
def test_every_stage_loads_at_every_profile(stage, profile):
    params = load_params(PARAMS / f"{stage}.yaml", profile)
    assert params["stage"] == stage and params["profile"] == profile
    sched = params["schedule"]
    assert 0 <= sched["start_step"] < sched["end_step"]


def test_full_profile_is_the_seed_recipe():
    s1, s2, s3 = (load_params(PARAMS / f"stage{i}.yaml") for i in (1, 2, 3))
    assert (s1["data"]["points"], s2["data"]["points"], s3["data"]["points"]) == (2048, 4096, 4096)
    assert (s1["train"]["batch_size"], s2["train"]["batch_size"]) == (32, 64)
    assert s1["schedule"]["end_step"] == s2["schedule"]["start_step"]
    assert s2["schedule"]["end_step"] == s3["schedule"]["start_step"]
    assert s3["schedule"]["cooldown_start"] + s3["schedule"]["cooldown_steps"] == s3["schedule"]["end_step"]
    assert s3["loss"]["endpoint"]["weight"] > 0 == s1["loss"]["endpoint"]["weight"] == s2["loss"]["endpoint"]["weight"]
    assert (s2["init_from"], s3["init_from"]) == ("stage1", "stage2")


@pytest.mark.parametrize("profile", ["cpu", "smoke"])
def test_profiles_keep_the_recipe_shape(profile):
    s1, s2, s3 = (load_params(PARAMS / f"stage{i}.yaml", profile) for i in (1, 2, 3))
    assert s2["data"]["points"] == 2 * s1["data"]["points"]
    assert s1["schedule"]["end_step"] == s2["schedule"]["start_step"]
    assert s2["schedule"]["end_step"] == s3["schedule"]["start_step"]
    assert s3["schedule"]["cooldown_start"] + s3["schedule"]["cooldown_steps"] == s3["schedule"]["end_step"]


def test_override_sets_a_nested_key():
    params = load_params(PARAMS / "stage1.yaml", "smoke", ["train.batch_size=3", "schedule.lr=1e-3"])
    assert params["train"]["batch_size"] == 3 and params["schedule"]["lr"] == 1e-3


@pytest.mark.parametrize("override, message", [
    ("schedule.lrr=1", "unknown key schedule.lrr; did you mean schedule.lr"),
    ("train.batch_size=abc", "train.batch_size should be int"),
    ("model.qk_norm=3", "model.qk_norm should be bool"),
    ("model=3", "model should be a mapping"),
    ("nokey", "expected key=value"),
    ("schedule.lr=null", "schedule.lr should be float, got None"),
    ("train.log_every=0", "train.log_every should be an integer >= 1, got 0"),
    ("train.batch_size=0", "train.batch_size should be an integer >= 1, got 0"),
    ("schedule.lr=.nan", "schedule.lr should be a number >= 0.0, got nan"),
    ("schedule.start_step=30", r"schedule.end_step \(25\) should be greater than schedule.start_step \(30\)"),
    ("schedule.cooldown_start=3", "schedule.cooldown_steps should be >= 1 when schedule.cooldown_start is set"),
    ("optim.betas=[0.9,", r"--set optim.betas=\[0.9,: '\[0.9,' is not a valid YAML value \(expected the node content"),
    ("optim.betas=[0.9]", r"optim.betas should be two numbers in \[0, 1\), got \[0.9\]"),
    ("model.hidden=33", r"model.hidden \(33\) should be divisible by model.num_heads \(2\)"),
    ("model.kv_heads_self=3", r"model.num_heads \(2\) should be divisible by model.kv_heads_self \(3\)"),
    ("schedule.warmup=26", r"schedule.warmup \(26\) should end within the schedule, by schedule.end_step \(25\)"),
    ("postprocess.merge_radii=[0.1,-1]", r"postprocess.merge_radii should be a list of numbers > 0, got \[0.1, -1\]"),
    ("sweep_lr=0.1", "sweep_lr should be null or a list of positive learning rates, got 0.1"),
    ("data.bad_samples=3", "data.bad_samples should be null or a name, got 3"),
])
def test_bad_override_names_the_key(override, message):
    with pytest.raises(ParamsError, match=message):
        load_params(PARAMS / "stage1.yaml", "smoke", [override])


@pytest.mark.parametrize("override, message", [
    ("schedule.cooldown_start=20", r"schedule.cooldown_start \(20\) should be >= schedule.start_step \(27\)"),
    ("schedule.cooldown_start=31", r"schedule.cooldown_start \+ schedule.cooldown_steps \(35\) should be <= "
                                   r"schedule.end_step \(34\)"),
])
def test_cooldown_lies_within_the_stage(override, message):
    with pytest.raises(ParamsError, match=message):
        load_params(PARAMS / "stage3.yaml", "smoke", [override])


def _out_of_range(limit):
    """A value just outside `limit`: below its low bound, or the bound itself where it is open."""
    if limit.open_low:
        return limit.low
    return limit.low - 1 if limit.low > -math.inf else limit.high + 1


@pytest.mark.parametrize("key, value", [(key, _out_of_range(limit)) for key, limit in LIMITS.items()]
                         + [(key, limit.high + (0 if limit.open_high else 1)) for key, limit in LIMITS.items()
                            if limit.high < math.inf]
                         + [(key, "nope") for key in CHOICES] + [(key, float("nan")) for key in LIMITS])
def test_every_out_of_range_value_names_its_key(key, value):
    """Each key of the tables, set outside its range or choices, is refused in one line naming it."""
    with pytest.raises(ParamsError, match=rf"(^|: ){re.escape(key)} should be .*, got ") as err:
        load_params(PARAMS / "stage1.yaml", "smoke", [f"{key}={value}"])
    assert "\n" not in str(err.value)


def test_tables_name_keys_of_base_yaml():
    base = read_yaml(PARAMS / "base.yaml")
    for key in [*LIMITS, *CHOICES]:
        node = base
        for part in key.split("."):
            assert part in node, key
            node = node[part]


def test_a_model_without_confidence_trains_no_confidence():
    """model.segment_conf false leaves no logit for loss.conf to train: refused unless its weight is 0."""
    with pytest.raises(ParamsError, match=r"^loss.conf.weight \(0.1\) should be 0 when model.segment_conf is false"):
        load_params(PARAMS / "stage1.yaml", "smoke", ["model.segment_conf=false"])
    assert not load_params(PARAMS / "stage1.yaml", "smoke", ["model.segment_conf=false", "loss.conf.weight=0"])[
        "model"]["segment_conf"]


def test_base_yaml_itself_is_not_a_stage():
    with pytest.raises(ParamsError, match=r"base.yaml: stage is not set \(null\); train a stage or ablation file"):
        load_params(PARAMS / "base.yaml", "smoke")


def test_invalid_yaml_file_is_one_line(tmp_path):
    for name in ("base.yaml", "profiles.yaml"):
        (tmp_path / name).write_text((PARAMS / name).read_text())
    (tmp_path / "bad.yaml").write_text("inherit: base.yaml\ntrain: {batch_size: 4\n")
    with pytest.raises(ParamsError, match=r"bad.yaml: not valid YAML \(.* at line 3, column 1\)$") as err:
        load_params(tmp_path / "bad.yaml")
    assert "\n" not in str(err.value)


def test_missing_file_and_profile(tmp_path):
    with pytest.raises(ParamsError, match="params file not found: .*nope.yaml"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="unknown profile 'gpu'"):
        load_params(PARAMS / "stage1.yaml", "gpu")


def test_stage_file_with_unknown_key_names_file(tmp_path):
    for name in ("base.yaml", "profiles.yaml"):
        (tmp_path / name).write_text((PARAMS / name).read_text())
    (tmp_path / "bad.yaml").write_text("inherit: base.yaml\ntrain: {batchsize: 4}\n")
    with pytest.raises(ParamsError, match=r"bad.yaml: unknown key train.batchsize; did you mean train.batch_size"):
        load_params(tmp_path / "bad.yaml")


def test_a_profiles_stage_overrides_reach_the_stages_that_inherit_it():
    evaluated = {name: load_params(PARAMS / f"{name}.yaml", "cpu")["train"]["eval_every"]
                 for name in ("stage1", "stage2", "control_points", "ablation_high_lr", "stage3")}
    profile = read_yaml(PARAMS / "profiles.yaml")["cpu"]
    finetune, other = profile["stages"]["stage2"]["train"]["eval_every"], profile["set"]["train"]["eval_every"]
    assert evaluated == {"stage1": other, "stage2": finetune, "control_points": finetune,
                         "ablation_high_lr": finetune, "stage3": other}


def test_a_profiles_stage_overrides_name_a_stage(tmp_path):
    for name in ("base.yaml", "stage1.yaml", "stage2.yaml"):
        (tmp_path / name).write_text((PARAMS / name).read_text())
    (tmp_path / "profiles.yaml").write_text("cpu:\n  scale: {steps: 1, lr: 1, points: 1, batch: 1}\n"
                                            "  stages: {stage_2: {train: {eval_every: 3}}}\n")
    with pytest.raises(ParamsError, match=r"profiles.yaml: profile cpu: stages.stage_2 names no stage; "
                                          r"did you mean stage2"):
        load_params(tmp_path / "stage1.yaml", "cpu")


@pytest.mark.parametrize("key, name", [("stage", "../../elsewhere"), ("stage", ".."), ("stage", "a/b"),
                                       ("init_from", "../stage1")])
def test_a_stage_name_is_a_plain_name(key, name):
    with pytest.raises(ParamsError, match=rf"stage1.yaml: {key} should be a plain name .*, got '{re.escape(name)}'"):
        load_params(PARAMS / "stage1.yaml", "smoke", [f"{key}={name}"])


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "inherit: a.yaml\nstage: a\n"}, r"inherit forms a cycle: {tmp}/a.yaml -> {tmp}/a.yaml$"),
    ({"a.yaml": "inherit: b.yaml\nstage: a\n", "b.yaml": "inherit: a.yaml\n"},
     r"inherit forms a cycle: {tmp}/a.yaml -> {tmp}/b.yaml -> {tmp}/a.yaml$"),
    ({"a.yaml": "stage: a\n"}, r"{tmp}/a.yaml: names no inherit; a params file inherits base.yaml"),
    ({"a.yaml": "inherit: b.yaml\nstage: a\n", "b.yaml": "# nothing yet\n"}, r"{tmp}/b.yaml: empty; "),
    ({"a.yaml": "inherit: [base.yaml]\nstage: a\n"}, r"{tmp}/a.yaml: inherit should be the name of a params file"),
])
def test_an_inherit_chain_that_does_not_end_at_base_yaml_is_one_line(tmp_path, files, message):
    for name in ("base.yaml", "profiles.yaml"):
        (tmp_path / name).write_text((PARAMS / name).read_text())
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ParamsError, match=message.format(tmp=re.escape(str(tmp_path)))):
        load_params(tmp_path / "a.yaml", "smoke")
