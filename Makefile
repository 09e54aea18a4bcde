# Two commands set everything up on a fresh machine with Python 3.11:
#   make bench   creates .venv, installs, runs the Basht baseline, writes reports/<run-id>/
#   make test    creates .venv, installs, runs the test suite (and ruff)
#   make smoke   runs all of Basht's experiments at the smoke budget (benchmarks/)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: bench smoke test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/pytest benchmarks/test_baseline.py --basht-workload workloads/baseline.yaml \
		--basht-report-dir reports

# every Basht experiment at the smoke budget (minutes, not hours): one report, tables, plots
smoke: $(STAMP)
	$(BIN)/pytest benchmarks/ --basht-budget smoke --basht-report-dir reports

test: $(STAMP) lint
	$(BIN)/pytest tests

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
