# The two commands of the README: `make book` (the main job) and `make test`.
# Both create the virtual environment on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu

.PHONY: book test data clean publish gpu-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,test,official]"
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

data: $(VENV)/.installed
	$(PY) -m s23dr.pipeline data --profile $(PROFILE)

book: $(VENV)/.installed
	$(PY) -m s23dr.pipeline book --profile $(PROFILE)

# Commit the last `make book` output to the gh-pages branch (refused if not current); PUSH=1 pushes it.
publish: $(VENV)/.installed
	$(PY) -m s23dr.publish --profile $(PROFILE) $(if $(PUSH),--push)

# The prepared GPU check (benchmarks/gpu_check.py): CUDA tests, bench compiled and eager, a short
# stage-1 run; writes benchmarks/results/gpu_check.json. On a machine without a package index,
# run the command in the script's docstring instead.
gpu-check: $(VENV)/.installed
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf _build runs data
