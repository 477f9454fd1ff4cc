# The two set-up commands of the README: `make run` (main job) and `make test` (tests).
# Each creates .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: run test test-slow lint bench venv venv-lm clean

$(BIN)/forgetlab: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/forgetlab

$(VENV)/.lm: $(BIN)/forgetlab
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,lm]"
	touch $@

venv-lm: $(VENV)/.lm

run: venv
	$(BIN)/forgetlab theory

test: venv-lm
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: venv-lm
	$(BIN)/python -m pytest -m slow -q

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: venv-lm
	for f in bench/*.py; do $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
