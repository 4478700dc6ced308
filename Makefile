# make demo  - the whole pipeline, offline on the CPU (digits and Fashion-MNIST), in minutes
# make test  - the test suite (unit, property, workflow and notebook tests)
# Each target creates .venv and installs the project into it when missing.
#
# The demo runs in the current directory, so `make -f /path/to/Makefile demo DEMO_CONFIG=my.yaml`
# runs another config elsewhere with this checkout's venv.

ROOT   := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
VENV   := $(ROOT)/.venv
BIN    := $(VENV)/bin
export PATH := $(BIN):$(PATH)
STAMP  := $(VENV)/.installed
CORES  ?= all
DEMO_CONFIG ?= $(ROOT)/config/demo.yaml
# Empty: every output of the config. E.g. DEMO_TARGETS=results/table2.csv for Table 2 alone.
DEMO_TARGETS ?=
# The Snakefile sits at the top, so Snakemake does not find workflow/profiles/default by itself.
SNAKEMAKE   := $(BIN)/snakemake -s $(ROOT)/Snakefile --workflow-profile $(ROOT)/workflow/profiles/default

.PHONY: help demo test lint dryrun clean-demo

help:
	@echo "make demo   run the offline CPU demo (config/demo.yaml) -> results/, then open results/report.html"
	@echo "make test   run the tests"
	@echo "make lint   snakemake --lint"
	@echo "make dryrun dry run of the paper's config (config/config.yaml)"

$(STAMP): $(ROOT)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e '$(ROOT)[workflow,test]'
	touch $(STAMP)

# Fashion-MNIST comes from Debian's package where it can be installed, else the data step
# downloads it; a job that fails prints its log (the workflow profile's show-failed-logs).
demo: $(STAMP)
	$(BIN)/python -m cce check-config $(DEMO_CONFIG)
	@sh $(ROOT)/workflow/scripts/install-fashion-mnist.sh
	$(SNAKEMAKE) $(DEMO_TARGETS) --cores $(CORES) --configfile $(DEMO_CONFIG)
	$(SNAKEMAKE) $(DEMO_TARGETS) --cores $(CORES) --configfile $(DEMO_CONFIG) --report results/report.html
	@echo "Done. Open results/report.html: every table and figure with its caption;"
	@echo "      results/*.csv, results/figures/, results/notebooks/*.html"

# The tiny workflow in the tests trains networks on Fashion-MNIST: the same install step as the demo.
test: $(STAMP)
	@sh $(ROOT)/workflow/scripts/install-fashion-mnist.sh
	cd $(ROOT) && $(BIN)/python -m pytest

lint: $(STAMP)
	$(SNAKEMAKE) --lint

dryrun: $(STAMP)
	$(SNAKEMAKE) --cores all -n --quiet rules

clean-demo:
	rm -rf results/features/digits results/features/fashion_mnist results/runs results/notebooks \
	       results/figures results/*.csv results/report.html logs
