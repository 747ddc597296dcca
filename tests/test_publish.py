"""`make publish` (s23dr.publish): the current book, and only it, lands on the gh-pages branch."""

import subprocess
from pathlib import Path

import pytest
import yaml

from s23dr import pipeline, publish, rundir

ROOT = Path(__file__).resolve().parents[1]
INPUTS = {"sources": "as built"}


def chapters():
    """Every page of the book's table of contents (_toc.yml), as its path without suffix."""
    return pipeline.toc_pages(ROOT / "_toc.yml")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository with a fake built book, stamped current, as the working directory."""
    pytest.importorskip("ghp_import")
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                       "GIT_COMMITTER_EMAIL": "t@t"}.items():
        monkeypatch.setenv(key, value)
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    for page in ["index", *chapters()]:
        path = publish.BOOK / f"{page}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<html>{page}</html>")
    monkeypatch.setattr(publish, "book_inputs", lambda profile, runs: INPUTS)
    rundir.mark_current(publish.BOOK, INPUTS)
    return tmp_path


def test_publish_commits_the_book_to_gh_pages(repo):
    assert publish.main([]) == 0
    tree = subprocess.run(["git", "ls-tree", "-r", "--name-only", "gh-pages"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert {"index.html", ".nojekyll", *(f"{page}.html" for page in chapters())} <= set(tree)


def test_publish_refuses_a_stale_or_missing_book(repo, capsys):
    rundir.mark_current(publish.BOOK, {"sources": "changed since"})
    assert publish.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "older than its sources" in err
    (publish.BOOK / "index.html").unlink()
    assert publish.main([]) == 2
    assert "run `make book` first" in capsys.readouterr().err
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "gh-pages"], capture_output=True).returncode != 0


def test_the_book_stamp_follows_its_chapters_and_the_repository_setting(tmp_path, monkeypatch):
    """A chapter or the repository URL changed after `make book` makes the book stale; an
    executed notebook's log does not (the notebooks count through their own stamps)."""
    from s23dr import pipeline

    for path in ("_config.yml", "_toc.yml", "book/intro.md", "book/executed/data.log"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("a")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "all_notebook_inputs", lambda profile, runs: {})
    monkeypatch.delenv(pipeline.REPOSITORY_ENV, raising=False)
    before = pipeline.book_inputs("cpu", "runs")
    (tmp_path / "book/executed/data.log").write_text("b")
    assert pipeline.book_inputs("cpu", "runs") == before
    (tmp_path / "book/intro.md").write_text("b")
    changed = pipeline.book_inputs("cpu", "runs")
    assert changed != before
    monkeypatch.setenv(pipeline.REPOSITORY_ENV, "https://github.com/someone/s23dr")
    assert pipeline.book_inputs("cpu", "runs") != changed


def test_the_repository_setting_turns_the_buttons_on(tmp_path, monkeypatch):
    from s23dr import pipeline

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv(pipeline.REPOSITORY_ENV, raising=False)
    assert pipeline.book_config(tmp_path) == Path("_config.yml")
    monkeypatch.setenv(pipeline.REPOSITORY_ENV, "https://github.com/someone/s23dr")
    config = yaml.safe_load(pipeline.book_config(tmp_path).read_text())
    assert config["repository"]["url"] == "https://github.com/someone/s23dr"
    assert config["html"]["use_repository_button"] and config["html"]["use_issues_button"]
    assert config["sphinx"] == yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]
    monkeypatch.setenv(pipeline.REPOSITORY_ENV, "github.com/someone/s23dr")
    with pytest.raises(ValueError, match=pipeline.REPOSITORY_ENV):
        pipeline.book_config(tmp_path)
