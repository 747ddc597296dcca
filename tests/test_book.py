"""The book's prose types no run figure: a number with two or more decimals in book/*.md is
glued from a notebook, or is a value of params/ (the seed's recipe and its reported figures,
each with its source in params/baseline_results.yaml) or a constant of the model's code."""

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"(?<![\w.])\d+\.\d{2,}(?![\w.])")


def numbers(tree):
    if isinstance(tree, dict):
        return {n for v in tree.values() for n in numbers(v)}
    if isinstance(tree, list):
        return {n for v in tree for n in numbers(v)}
    return {float(tree)} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else set()


def allowed():
    found = {n for p in (ROOT / "params").glob("*.yaml") for n in numbers(yaml.safe_load(p.read_text()))}
    model = ast.parse((ROOT / "lib/s23dr/model.py").read_text())
    found |= {float(node.value.value) for node in model.body if isinstance(node, ast.Assign)
              and isinstance(node.value, ast.Constant) and isinstance(node.value.value, (int, float))}
    return found


def prose(text):
    """The text a reader reads as typed: without code blocks, code spans and glue roles."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"\{glue[^`]*`[^`]*`", "", text)
    return re.sub(r"`[^`]*`", "", text)


def test_no_typed_figure_in_the_book():
    ok = allowed()
    typed = [f"{page.name}: {m.group()}" for page in sorted((ROOT / "book").glob("*.md"))
             for m in FIGURE.finditer(prose(page.read_text())) if float(m.group()) not in ok]
    assert not typed, f"typed figures (glue them, or cite them from params/): {typed}"


def test_the_check_finds_a_typed_figure():
    assert FIGURE.findall(prose("stage 3 reached HSS 0.417 here, {glue:text}`x.ipynb::y:.3f` and `0.123`")) == ["0.417"]
