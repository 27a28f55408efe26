# dbt-watcher developer commands. Every target sets up what it needs (venv, packages, services).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
DEMO_ARGS ?=

BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: help install services test test-unit test-integration test-rows test-long lint docs demo bench bench-quick bench-scale bench-unchanged clean

help:
	@echo "make demo   - run the example DAG end to end in a real Airflow stack (DuckDB) and print per-model results"
	@echo "make test   - run the whole test suite (unit + real-stack integration) but the long workloads, as jobs side by side"
	@echo "make test-long - the long workloads make test skips (1,000 consumers, a triggerer killed)"
	@echo "make test-rows - the other Airflow, Python and dbt lines, each in a venv of its own (ROWS=... for some)"
	@echo "make lint   - ruff, ruff format --check, mypy --strict"
	@echo "make docs   - build the documentation site (mkdocs --strict) into site/"
	@echo "make bench-quick / make bench - dbt-watcher vs bare dbt build vs Cosmos (see bench/README.md)"
	@echo "make bench-scale - two 3,000-model projects: dbt-watcher vs bare dbt build (Cosmos at 1,000), under an hour"
	@echo "make bench-unchanged - skip_unchanged: an unchanged re-run and a one-model change vs bare dbt build (185, ~1,100 models)"

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(VENV)/bin/uv pip install --quiet --python $(PY) -c requirements/constraints.txt -e ".[test,dev]"
	@touch $(STAMP)

install: $(STAMP)

services: $(STAMP)
	$(PY) -m devstack.services

# The whole suite as jobs side by side (devstack/suite.py: unit suite, then the integration suite in two
# halves, two real stacks at a time); SUITE_ARGS=--rows adds every version row (CI). PYTEST_ARGS=... runs
# plain pytest with them instead; pytest exits 5 when it collects nothing, not a failure of the suite.
SUITE_ARGS ?=
test: $(STAMP) services
ifeq ($(strip $(PYTEST_ARGS)),)
	$(PY) -m devstack.suite $(SUITE_ARGS)
else
	$(PY) -m pytest $(PYTEST_ARGS) || { s=$$?; if [ $$s -eq 5 ]; then echo "pytest collected no tests"; else exit $$s; fi; }
endif

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) services
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

# Long workloads (marked `long`: a thousand consumers and a triggerer killed), which `make test` skips.
test-long: $(STAMP) services
	DBT_WATCHER_LONG=1 $(PY) -m pytest tests/integration -m long $(PYTEST_ARGS)

# The version rows (devstack/rows.py): each row's venv from its lock file, its unit suite and real-stack subset.
# ROWS_PHASE=unit or stack runs one half.
ROWS ?=
ROWS_PHASE ?= all
test-rows: $(STAMP) services
	$(PY) -m devstack.rows --phase $(ROWS_PHASE) $(ROWS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests devstack examples
	$(VENV)/bin/ruff format --check src tests devstack examples
	$(VENV)/bin/mypy

# The documentation site (mkdocs, strict: a warning is an error) into site/.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

demo: $(STAMP) services
	$(PY) examples/demo.py $(DEMO_ARGS)

$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/uv pip install --quiet --python $(PY) -c requirements/constraints.txt -e ".[test,dev,bench]"
	@touch $(BENCH_STAMP)

bench-quick: $(BENCH_STAMP) services
	$(PY) bench/run.py --quick

bench: $(BENCH_STAMP) services
	$(PY) bench/run.py

bench-scale: $(BENCH_STAMP) services
	$(PY) bench/scale.py

bench-unchanged: $(BENCH_STAMP) services
	$(PY) bench/unchanged.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
