"""Notebook regression tests: `pytest --nbval-lax notebooks/`, part of `make test`.

The notebooks run at the smoke profile unless S23DR_PROFILE names another. Before the
first notebook cell runs, the profile's data and every stage's runs are prepared once,
in dependency order, so each notebook finds its upstream checkpoints whatever order the
notebooks are collected in, and its own training call finds its run current.
"""

import functools
import os
from pathlib import Path

os.environ.setdefault("S23DR_PROFILE", "smoke")  # the kernels nbval starts inherit it
ROOT = Path(__file__).resolve().parent


@functools.cache
def prepare(profile):
    from s23dr import pipeline

    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        pipeline.prepare_runs(profile)
    finally:
        os.chdir(cwd)


def pytest_runtest_setup(item):
    if item.path.suffix == ".ipynb":
        prepare(os.environ["S23DR_PROFILE"])
