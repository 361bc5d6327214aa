# The two commands a user needs: `make run` and `make test`. Both create .venv and install the
# pinned dependencies (requirements.lock) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SCENARIO ?= scenarios/chat-startup.yaml
REPLICATIONS ?= 5

.PHONY: install run test test-fast lint bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/crossover run $(SCENARIO) --replications $(REPLICATIONS) --seed 1 --out out/$(notdir $(basename $(SCENARIO)))
	$(BIN)/crossover report out/$(notdir $(basename $(SCENARIO))) -o out/$(notdir $(basename $(SCENARIO)))/report.html

lint: $(STAMP)
	$(BIN)/ruff check sim tests benchmarks notebooks
	$(BIN)/ruff format --check sim tests benchmarks notebooks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
	find sim -name '*.nbi' -delete -o -name '*.nbc' -delete
