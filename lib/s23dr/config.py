"""Params: a stage file over `base.yaml`, scaled by a profile, then `--set` overrides.

A profile scales the recipe (`scale`), sets keys for every stage (`set`), and may set keys
for one stage and the stages that inherit from its file (`stages`: {stage: keys}), applied
after `set` in inheritance order.

`params/base.yaml` names every key there is; a stage file, a profile and a command
line may only override them. An unknown key fails with the closest known names, a
value of the wrong type (null included, where base.yaml has a value) names the key and
the type it should have, and `check` refuses values the trainer cannot run with or that
would quietly ruin a run or a score: a number outside its range (`LIMITS`), a name
outside its choices (`CHOICES`), keys that do not fit together (heads that do not
divide the width, a cooldown outside the stage). So each mistake is one line naming
its key, not a traceback part-way through a run. The result is a plain nested dict, stored in every checkpoint.
"""

import copy
import difflib
import functools
import math
import re
from pathlib import Path
from typing import NamedTuple

import yaml

BASE_FILE = "base.yaml"
PROFILES_FILE = "profiles.yaml"
STAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
STEP_KEYS = ("start_step", "end_step", "warmup", "cooldown_start", "cooldown_steps")

class Range(NamedTuple):
    """The values a number key may take: `kind` (int or float) between `low` and `high`,
    each bound excluded where `open_low` / `open_high` says so."""
    kind: type
    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def holds(self, value):
        number = isinstance(value, (int, float) if self.kind is float else int) and not isinstance(value, bool)
        return number and (self.low < value if self.open_low else self.low <= value) and (
            value < self.high if self.open_high else value <= self.high)  # NaN fails every comparison

    def __str__(self):
        what = "an integer" if self.kind is int else "a number"
        if self.high == math.inf:
            return f"{what} {'>' if self.open_low else '>='} {self.low}"
        return f"{what} in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"


def at_least(low):
    return Range(type(low), low)


def above(low):
    return Range(float, low, open_low=True)


#: The numbers the trainer counts, divides, steps or thresholds by: key -> its Range.
#: null passes only where base.yaml has null (the merge refuses it elsewhere).
LIMITS = {
    **{f"model.{key}": at_least(1) for key in (
        "hidden", "ff", "input_ff", "latent_tokens", "latent_layers", "decoder_layers", "cross_attn_interval",
        "num_heads", "kv_heads_cross", "kv_heads_self", "segments")},
    **{f"model.{key}": at_least(0) for key in (
        "encoder_layers", "behind_emb_dim", "fourier_freqs", "class_emb_dim",
        "source_emb_dim")},
    "model.dropout": Range(float, 0.0, 1.0, open_high=True), "model.fourier_scale": above(0.0),
    **{f"loss.cost.{key}": at_least(0.0) for key in ("midpoint", "direction", "length")},
    "loss.sinkhorn.eps": above(0.0), "loss.sinkhorn.iters": at_least(1), "loss.sinkhorn.dustbin": above(0.0),
    "loss.conf.weight": at_least(0.0),
    "loss.endpoint.weight": at_least(0.0), "loss.aux.weight": at_least(0.0),
    "seeds": at_least(1), "schedule.start_step": at_least(0), "schedule.end_step": at_least(1), "schedule.lr": at_least(0.0),
    "schedule.warmup": at_least(0), "schedule.cooldown_start": at_least(0), "schedule.cooldown_steps": at_least(0),
    "optim.weight_decay": at_least(0.0), "optim.head_wd": at_least(0.0),
    "data.points": at_least(1), "data.num_workers": at_least(0),
    "data.synthetic.train": at_least(1), "data.synthetic.val": at_least(1), "data.synthetic.seed": at_least(0),
    "eval.conf_threshold": Range(float, 0.0, 1.0), "eval.vert_thresh": above(0.0),
    "eval.edge_thresh": above(0.0), "eval.max_scenes": at_least(1), "eval.final_scenes": at_least(1),
    "eval.train_scenes": at_least(1),
    "train.seed": at_least(0), "train.batch_size": at_least(1), "train.log_every": at_least(1),
    "train.eval_every": at_least(1), "train.ckpt_every": at_least(1), "train.keep_checkpoints": at_least(1),
    "postprocess.snap_radius": above(0.0), "postprocess.snap_min_points": at_least(1),
}

#: The names a key may take: key -> its allowed values (the criterion and the CPU precision read theirs from here).
CHOICES = {
    "loss.matching": ("sinkhorn", "hungarian"),
    "train.cpu_precision": ("auto", "bf16", "fp32"),
    "train.compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
}


class ParamsError(ValueError):
    """A params file, profile or override that does not fit `base.yaml`."""


def read_yaml(path):
    """The mapping in the YAML file `path` (a copy the caller may change). The stage graph reads
    every params file many times a run; each text is parsed once (`_parse`, keyed by the text,
    so an edited file is read anew)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    return copy.deepcopy(_parse(path.read_text(), str(path)))


@functools.lru_cache(maxsize=256)
def _parse(text, where):
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{where}: not valid YAML ({_yaml_problem(err)})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: expected a mapping of keys at the top level")
    return data


def _yaml_problem(err):
    """A YAML parser error in one line: what and where."""
    mark = getattr(err, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{getattr(err, 'problem', None) or err}{at}"


def _check_type(key, value, default, where):
    if default is None:  # base.yaml leaves the key open: null or any value
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float) and isinstance(value, int):
        return float(value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ParamsError(
            f"{where}: {key} should be {type(default).__name__}, got {value!r}")
    return value


def merge(base, override, where, prefix=""):
    """Deep-merge `override` into a copy of `base`, refusing keys `base` does not have."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{prefix}{key}"
        if key not in base:
            close = difflib.get_close_matches(key, list(base), n=3)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise ParamsError(f"{where}: unknown key {name}{hint}")
        if isinstance(base[key], dict) and base[key]:
            if not isinstance(value, dict):
                raise ParamsError(f"{where}: {name} should be a mapping, got {value!r}")
            out[key] = merge(base[key], value, where, f"{name}.")
        else:
            out[key] = _check_type(name, value, base[key], where)
    return out


def _chain(path):
    """The files from base.yaml down to `path`, following `inherit:`: every file sets keys, only
    base.yaml inherits none, and a file inherited twice (a cycle) is refused, naming the chain."""
    chain, path = [], Path(path)
    while True:
        if any(path.resolve() == file.resolve() for file, _ in chain):
            raise ParamsError(f"inherit forms a cycle: {' -> '.join(str(file) for file, _ in chain)} -> {path}")
        data = read_yaml(path)
        if not data:
            raise ParamsError(f"{path}: empty; a params file inherits {BASE_FILE} (or a file that does) and sets keys")
        parent = data.pop("inherit", None)
        chain.append((path, data))
        if parent is None:
            break
        if not isinstance(parent, str):
            raise ParamsError(f"{path}: inherit should be the name of a params file, got {parent!r}")
        path = path.parent / parent
    if path.name != BASE_FILE:
        raise ParamsError(f"{path}: names no inherit; a params file inherits {BASE_FILE} or a file that does")
    return chain[::-1]


def parse_override(text):
    """`key.sub=value` -> {"key": {"sub": value}}, with the value read as YAML."""
    if "=" not in text:
        raise ParamsError(f"--set {text}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ParamsError(f"--set {text}: {raw!r} is not a valid YAML value ({_yaml_problem(err)})") from None
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def apply_scale(params, scale):
    """Scale the recipe's step counts, learning rates, point count and batch size by a profile's factors."""
    schedule = params["schedule"]
    for key in STEP_KEYS:
        if schedule[key] is not None:
            schedule[key] = int(round(schedule[key] * scale["steps"]))
    schedule["lr"] *= scale["lr"]
    if params["sweep_lr"]:
        params["sweep_lr"] = [lr * scale["lr"] for lr in params["sweep_lr"]]
    params["data"]["points"] = int(round(params["data"]["points"] * scale["points"]))
    params["train"]["batch_size"] = max(1, int(round(params["train"]["batch_size"] * scale["batch"])))
    return params


def load_params(path, profile="full", overrides=()):
    """The params of one stage file at one profile, with `key=value` overrides applied last."""
    chain = _chain(path)
    base_path, params = chain[0]
    for file, data in chain[1:]:
        params = merge(params, data, str(file))
    profiles = read_yaml(Path(base_path).parent / PROFILES_FILE)
    if profile not in profiles:
        raise ParamsError(f"unknown profile {profile!r}; choose one of {', '.join(profiles)}")
    params = apply_scale(params, profiles[profile]["scale"])
    params = merge(params, profiles[profile].get("set") or {}, f"profile {profile}")
    per_stage = profiles[profile].get("stages") or {}
    _check_stage_names(per_stage, Path(base_path).parent, profile)
    for _, data in chain[1:]:  # a stage's own overrides, then those of the stages it inherits
        if data.get("stage") in per_stage:
            params = merge(params, per_stage[data["stage"]], f"profile {profile}, stages.{data['stage']}")
    for text in overrides:
        params = merge(params, parse_override(text), f"--set {text}")
    params["profile"] = profile
    check(params, path)
    return params


def _check_stage_names(per_stage, folder, profile):
    """A profile's `stages` overrides name stages that exist (a typo would apply to nothing)."""
    known = {read_yaml(f).get("stage") for f in sorted(Path(folder).glob("*.yaml")) if f.name != PROFILES_FILE}
    for name in per_stage:
        if name not in known:
            close = difflib.get_close_matches(str(name), sorted(k for k in known if k), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ParamsError(f"{folder / PROFILES_FILE}: profile {profile}: stages.{name} names no stage{hint}")


def check(params, path):
    """Refuse values that would fail only once a run has started, naming the key."""
    if not isinstance(params["stage"], str) or not params["stage"]:
        raise ParamsError(f"{path}: stage is not set (null); train a stage or ablation file that "
                          f"names one, e.g. params/stage1.yaml")
    for key, limit in LIMITS.items():
        value = _value(params, key)
        if value is not None and not limit.holds(value):
            raise ParamsError(f"{key} should be {limit}, got {value!r}")
    for key, allowed in CHOICES.items():
        if _value(params, key) not in allowed:
            raise ParamsError(f"{key} should be one of {', '.join(allowed)}, got {_value(params, key)!r}")
    model = params["model"]
    if not model["segment_conf"] and params["loss"]["conf"]["weight"] > 0:
        raise ParamsError(f"loss.conf.weight ({params['loss']['conf']['weight']}) should be 0 when "
                          f"model.segment_conf is false: the model then predicts no confidence to train")
    for heads, of in (("num_heads", "hidden"), ("kv_heads_cross", "num_heads"), ("kv_heads_self", "num_heads")):
        if model[of] % model[heads]:  # the attention splits `of` into `heads` equal groups
            raise ParamsError(f"model.{of} ({model[of]}) should be divisible by model.{heads} ({model[heads]})")
    sched = params["schedule"]
    if sched["end_step"] <= sched["start_step"]:
        raise ParamsError(f"schedule.end_step ({sched['end_step']}) should be greater than "
                          f"schedule.start_step ({sched['start_step']})")
    if sched["warmup"] > sched["end_step"]:
        raise ParamsError(f"schedule.warmup ({sched['warmup']}) should end within the schedule, by "
                          f"schedule.end_step ({sched['end_step']})")
    if sched["cooldown_start"] is not None:
        if sched["cooldown_steps"] < 1:
            raise ParamsError(f"schedule.cooldown_steps should be >= 1 when schedule.cooldown_start is set, "
                              f"got {sched['cooldown_steps']}")
        if sched["cooldown_start"] < sched["start_step"]:
            raise ParamsError(f"schedule.cooldown_start ({sched['cooldown_start']}) should be >= "
                              f"schedule.start_step ({sched['start_step']})")
        end = sched["cooldown_start"] + sched["cooldown_steps"]
        if end > sched["end_step"]:
            raise ParamsError(f"schedule.cooldown_start + schedule.cooldown_steps ({end}) should be <= "
                              f"schedule.end_step ({sched['end_step']})")
    radii = params["postprocess"]["merge_radii"]
    if not all(above(0.0).holds(r) for r in radii):
        raise ParamsError(f"postprocess.merge_radii should be a list of numbers > 0, got {radii!r}")
    betas = params["optim"]["betas"]
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ParamsError(f"optim.betas should be two numbers in [0, 1), got {betas!r}")
    sweep = params["sweep_lr"]
    if sweep is not None and not (isinstance(sweep, list) and sweep
                                  and all(isinstance(lr, (int, float)) and lr > 0 for lr in sweep)):
        raise ParamsError(f"sweep_lr should be null or a list of positive learning rates, got {sweep!r}")
    for key in ("init_from", "data.bad_samples"):
        if not isinstance(_value(params, key), (str, type(None))):
            raise ParamsError(f"{key} should be null or a name, got {_value(params, key)!r}")
    for key in ("stage", "init_from"):  # each names a folder of the runs directory
        if params[key] is not None and not STAGE_NAME.fullmatch(params[key]):
            raise ParamsError(f"{path}: {key} should be a plain name (letters, digits, _ . -, not starting "
                              f"with . or -), got {params[key]!r}")


def _value(params, key):
    """params["a"]["b"] for the dotted key "a.b"."""
    for part in key.split("."):
        params = params[part]
    return params


def architecture(params):
    """The model keys that fix its weights' shapes: a checkpoint loads only where these agree."""
    return {k: v for k, v in params["model"].items() if k != "dropout"}
