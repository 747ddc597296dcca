"""A page's set-up: the project root, its notebook parameters checked and read as params,
its data, and the baseline's published figures (`params/baseline_results.yaml`)."""

import ast
import difflib
import os
import warnings
from pathlib import Path

import yaml

from ..config import ParamsError, load_params
from ..data import data_uri, open_dataset


def chdir_root(start=None):
    """Change to the project root and return it: the nearest folder at or above `start`
    (default: the working directory) holding params/base.yaml, else the project this
    package was installed from (editable), so a notebook runs from any cwd. Every notebook
    calls it first, so it also quiets tqdm's warning that a kernel without ipywidgets
    shows text progress bars (fine in a book)."""
    warnings.filterwarnings("ignore", message="IProgress not found")
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if (folder / "params" / "base.yaml").is_file():
            os.chdir(folder)
            return folder
    raise FileNotFoundError(f"no params/base.yaml in {here} or any folder above it, nor beside "
                            f"the installed package: run the notebook inside the project")


#: The notebooks' parameters (each one's `parameters` cell) and what each may be.
PARAMETERS = {"profile": ((str,), "a profile name (a string)"), "params": ((str, os.PathLike), "a params file path"),
              "data": ((str, type(None)), "a dataset URI prefix or None"), "runs": ((str, os.PathLike), "a folder path"),
              "init": ((str, os.PathLike, type(None)), "a checkpoint path or None"),
              "device": ((str, type(None)), "a device name or None"), "seed": ((int, str, type(None)), "an integer or None")}


def check_parameters(namespace):
    """Refuse, in one line naming it, a notebook parameter of another type than `PARAMETERS` says
    (a number for `profile`, say), and a parameter papermill was given that the notebook lacks
    (papermill defines a misspelt one as a new variable and only warns), naming the closest. A
    notebook calls it with its `globals()` in the cell after its `parameters` cell, so after the
    cell papermill injects there (`# Parameters`, found in IPython's input history `In`)."""
    injected = [cell for cell in namespace.get("In", []) if cell.startswith("# Parameters\n")]
    given = [node.id for cell in injected[-1:] for node in ast.walk(ast.parse(cell))
             if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)]
    for name in given:
        if name not in PARAMETERS:
            close = difflib.get_close_matches(name, PARAMETERS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the parameters are {', '.join(PARAMETERS)}"
            raise ParamsError(f"notebook parameter {name} is not one of this notebook's; {hint}")
    for name, (kinds, what) in PARAMETERS.items():
        value = namespace.get(name)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ParamsError(f"notebook parameter {name} should be {what}, got {value!r}")


def notebook_params(path, profile, data=None, seed=None):
    """A params file as a notebook's parameters ask: `data` a dataset URI prefix (the profile's
    own data when None) to which `:train` and `:validation` are appended, `seed` the training seed."""
    overrides = [f"data.train={data}:train", f"data.val={data}:validation"] if data else []
    if seed is not None:
        if isinstance(seed, bool) or not str(seed).lstrip("-").isdigit():
            raise ParamsError(f"notebook parameter seed should be an integer (a training seed) or None, got {seed!r}")
        overrides.append(f"train.seed={int(seed)}")
    return load_params(path, profile, overrides)


def split_at(params, points, split):
    """The scenes of `split` (train or val) of the params' data, sampled to `points` points."""
    return open_dataset(data_uri({**params, "data": {**params["data"], "points": points}}, split))


BASELINE_RESULTS = "params/baseline_results.yaml"


def baseline_results(path=BASELINE_RESULTS):
    """The baseline's published figures (params/baseline_results.yaml)."""
    return yaml.safe_load(open(path))
