# The two set-up commands of the README: `make run` (main job) and `make test` (tests).
# Each creates .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: run test chromium test-slow lint bench venv venv-lm clean

$(BIN)/forgetlab: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/forgetlab

$(VENV)/.lm: $(BIN)/forgetlab
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,lm,sweep,trl]"
	touch $@

venv-lm: $(VENV)/.lm

run: venv-lm
	$(BIN)/forgetlab reproduce --profile full --out reproduce-report --allow-fail

test: venv-lm chromium
	$(BIN)/python -m pytest -m "not slow" -q

# Debian's chromium for the report's browser test; installed only when missing and we are root.
chromium:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	  else echo "chromium missing and not root: the browser test will be skipped"; fi; }

test-slow: venv-lm
	$(BIN)/python -m pytest -m slow -q

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: venv-lm
	for f in bench/*.py; do $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
