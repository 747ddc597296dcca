"""Params: a stage file over `base.yaml`, scaled by a profile, then `--set` overrides.

`params/base.yaml` names every key there is; a stage file, a profile and a command
line may only override them. An unknown key fails with the closest known names, a
value of the wrong type names the key and the type it should have. The result is a
plain nested dict, stored in every checkpoint.
"""

import copy
import difflib
from pathlib import Path

import yaml

PROFILES_FILE = "profiles.yaml"
STEP_KEYS = ("start_step", "end_step", "warmup", "cooldown_start", "cooldown_steps")


class ParamsError(ValueError):
    """A params file, profile or override that does not fit `base.yaml`."""


def read_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level")
    return data


def _check_type(key, value, default, where):
    if default is None or value is None:
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
    value = yaml.safe_load(raw)
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
    return params


def architecture(params):
    """The model keys that fix its weights' shapes: a checkpoint loads only where these agree."""
    return {k: v for k, v in params["model"].items() if k != "dropout"}
