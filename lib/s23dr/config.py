"""Params: a stage file over `base.yaml`, scaled by a profile, then `--set` overrides.

`params/base.yaml` names every key there is; a stage file, a profile and a command
line may only override them. An unknown key fails with the closest known names, a
value of the wrong type (null included, where base.yaml has a value) names the key and
the type it should have, and `check` refuses values the trainer cannot run with (a
zero batch size, say), so each mistake is one line naming its key, not a traceback
part-way through a run. The result is a plain nested dict, stored in every checkpoint.
"""

import copy
import difflib
from pathlib import Path

import yaml

PROFILES_FILE = "profiles.yaml"
STEP_KEYS = ("start_step", "end_step", "warmup", "cooldown_start", "cooldown_steps")

#: The numbers the trainer counts, divides or steps by: key -> (int or float, minimum).
#: null passes only where base.yaml has null (the merge refuses it elsewhere).
LIMITS = {
    "seeds": (int, 1), "schedule.start_step": (int, 0), "schedule.end_step": (int, 1), "schedule.lr": (float, 0.0),
    "schedule.warmup": (int, 0), "schedule.cooldown_start": (int, 0), "schedule.cooldown_steps": (int, 0),
    "optim.weight_decay": (float, 0.0), "optim.grad_clip": (float, 0.0),
    "data.points": (int, 1), "data.num_workers": (int, 0), "eval.max_scenes": (int, 1),
    "train.batch_size": (int, 1), "train.log_every": (int, 1), "train.eval_every": (int, 1),
    "train.ckpt_every": (int, 1),
}


class ParamsError(ValueError):
    """A params file, profile or override that does not fit `base.yaml`."""


def read_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level")
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
    """The files from base.yaml down to `path`, following `inherit:`."""
    data = read_yaml(path)
    parent = data.pop("inherit", None)
    if parent is None:
        return [(path, data)]
    return _chain(Path(path).parent / parent) + [(path, data)]


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
    for text in overrides:
        params = merge(params, parse_override(text), f"--set {text}")
    params["profile"] = profile
    check(params, path)
    return params


def check(params, path):
    """Refuse values that would fail only once a run has started, naming the key."""
    if not isinstance(params["stage"], str) or not params["stage"]:
        raise ParamsError(f"{path}: stage is not set (null); train a stage or ablation file that "
                          f"names one, e.g. params/stage1.yaml")
    for key, (kind, minimum) in LIMITS.items():
        value = _value(params, key)
        number = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
        if value is not None and not (number and value >= minimum):  # `not >=` also refuses NaN
            what = "an integer" if kind is int else "a number"
            raise ParamsError(f"{key} should be {what} >= {minimum}, got {value!r}")
    sched = params["schedule"]
    if sched["end_step"] <= sched["start_step"]:
        raise ParamsError(f"schedule.end_step ({sched['end_step']}) should be greater than "
                          f"schedule.start_step ({sched['start_step']})")
    if sched["cooldown_start"] is not None and sched["cooldown_steps"] < 1:
        raise ParamsError(f"schedule.cooldown_steps should be >= 1 when schedule.cooldown_start is set, "
                          f"got {sched['cooldown_steps']}")
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


def _value(params, key):
    """params["a"]["b"] for the dotted key "a.b"."""
    for part in key.split("."):
        params = params[part]
    return params


def architecture(params):
    """The model keys that fix its weights' shapes: a checkpoint loads only where these agree."""
    return {k: v for k, v in params["model"].items() if k != "dropout"}
