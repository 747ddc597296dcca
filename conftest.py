"""Notebook regression tests: `pytest --nbval-lax notebooks/`, part of `make test`.

The notebooks run at the smoke profile unless S23DR_PROFILE names another, with their runs
under S23DR_RUNS (default `runs`; .ci/run points it at a fresh folder to train them again
under other CPU kernels). Before the first notebook cell runs, the profile's data and every
stage's runs are prepared once, in dependency order, so each notebook finds its upstream
checkpoints whatever order the notebooks are collected in, and its own training call finds
its run current.

The smoke runs use one CPU thread (OMP_NUM_THREADS, unless set): their models are tiny,
and on a small machine shared with other jobs two OpenMP threads per process can make a
training step tens of times slower.
"""

import functools
import os
from pathlib import Path

os.environ.setdefault("S23DR_PROFILE", "smoke")  # the kernels nbval starts inherit it
ROOT = Path(__file__).resolve().parent
collect_ignore = ["notebooks/templates"]  # a template's markers are no notebook to run; its pages are checked


@functools.cache
def prepare(profile, runs):
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the kernels started from now on
    import torch

    from s23dr import pipeline

    threads, cwd = torch.get_num_threads(), Path.cwd()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    os.chdir(ROOT)
    try:
        pipeline.prepare_runs(profile, runs)
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)


def pytest_runtest_setup(item):
    if item.path.suffix == ".ipynb":
        prepare(os.environ["S23DR_PROFILE"], os.environ.get("S23DR_RUNS", "runs"))
