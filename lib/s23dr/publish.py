"""Publish the built book: `python -m s23dr.publish [--profile cpu] [--push]` (`make publish`).

It builds nothing: it commits the last `make book` output, `_build/html`, to the `gh-pages`
branch with ghp-import (with `.nojekyll`, so GitHub Pages serves `_static/` as it is) and
pushes it to `origin` only with `--push`. It refuses a book that is missing or no longer
current: the stamp `make book` leaves beside it (`pipeline.book_inputs`) must match what
the sources, params, library, benchmark results and executed notebooks are now, so what is
published is what they build.
"""

import argparse
import subprocess
import sys

from . import rundir
from .pipeline import BOOK, book_inputs

BRANCH = "gh-pages"


def check_current(profile, runs):
    """Raise ValueError, in one line, unless `_build/html` is the book of the sources as they are now."""
    if not (BOOK / "index.html").is_file():
        raise ValueError(f"no book at {BOOK}/index.html: run `make book` first")
    if not rundir.is_current(BOOK, book_inputs(profile, runs)):
        raise ValueError(f"{BOOK} is older than its sources (or was built at another profile than {profile}): "
                         "run `make book` again")


def publish(profile="cpu", runs="runs", push=False):
    """Commit the current book to the `gh-pages` branch; push it to origin if `push`."""
    check_current(profile, runs)
    command = [sys.executable, "-m", "ghp_import", "-n", "-b", BRANCH, "-m", "The book, built by make book"]
    subprocess.run([*command, *(["-p"] if push else []), str(BOOK)], check=True)
    print(f"{BOOK} committed to the {BRANCH} branch" + (" and pushed to origin" if push else " (not pushed: PUSH=1 pushes)"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m s23dr.publish", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="the profile the book was built at (default: cpu)")
    parser.add_argument("--runs", default="runs", help="root of the run directories (default: runs)")
    parser.add_argument("--push", action="store_true", help="also push the gh-pages branch to origin")
    args = parser.parse_args(argv)
    try:
        publish(args.profile, args.runs, args.push)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
