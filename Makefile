# make demo  - the whole pipeline, offline on the CPU (digits and Fashion-MNIST), in minutes
# make test  - the test suite (unit, property, workflow and notebook tests)
# Each target creates .venv and installs the project into it when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
STAMP  := $(VENV)/.installed
CORES  ?= all

.PHONY: help demo test lint dryrun clean-demo

help:
	@echo "make demo   run the offline CPU demo (config/demo.yaml) -> results/"
	@echo "make test   run the tests"
	@echo "make lint   snakemake --lint"
	@echo "make dryrun dry run of the paper's config (config/config.yaml)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e '.[workflow,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m cce check-config config/demo.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	@echo "Done: results/table2.csv, results/figures/, results/notebooks/*.html"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/snakemake --lint

dryrun: $(STAMP)
	$(BIN)/snakemake --cores all -n --quiet rules

clean-demo:
	rm -rf results/features/digits results/features/fashion_mnist results/runs results/notebooks \
	       results/figures results/*.csv logs
