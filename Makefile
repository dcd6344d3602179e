# Two entry points for a fresh machine: `make demo` and `make test`. Everything else is a step they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: demo test setup lint services bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "mloncall needs Python 3.11 or newer"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

## The main job: the end-to-end oncall demo on the embedded defaults (SQLite, a local artifact folder).
demo: $(STAMP)
	$(BIN)/mloncall demo

## The whole test suite, with lint and type checks, against real services, two tests at a time; then the
## tests that measure the machine's capacity, one at a time with nothing beside them.
test: $(STAMP) services
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --durations=25 -m "not alone"
	$(BIN)/python -m pytest -q --durations=5 -m alone

services:
	@bash scripts/services.sh

lint: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mloncall .pytest_cache .mypy_cache .ruff_cache
