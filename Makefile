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
LOCK   := $(ROOT)/requirements.lock
# The pip that installs the lock (pip itself is not in it).
PIP_VERSION := 26.3
CORES  ?= all
DEMO_CONFIG ?= $(ROOT)/config/demo.yaml
# Empty: every output of the config. E.g. DEMO_TARGETS=results/table2.csv for Table 2 alone.
DEMO_TARGETS ?=
# The Snakefile sits at the top, so Snakemake does not find workflow/profiles/default by itself.
SNAKEMAKE   := $(BIN)/snakemake -s $(ROOT)/Snakefile --workflow-profile $(ROOT)/workflow/profiles/default

.PHONY: help demo test lint dryrun clean-demo lock

help:
	@echo "make demo   run the offline CPU demo (config/demo.yaml) -> results/, then open results/report.html"
	@echo "make test   run the tests"
	@echo "make lint   snakemake --lint"
	@echo "make dryrun dry run of the paper's config (config/config.yaml)"
	@echo "make lock   resolve pyproject.toml's ranges anew into requirements.lock (then: rm -rf .venv && make test)"
	@echo "make gpu-check FMNIST_DIR=gpu/fashion-mnist OUT=dir   CUDA tests and timings on a GPU (docs/gpu.md)"

# The venv holds exactly the versions of requirements.lock (every package, pinned), then this
# checkout as an editable install without dependencies: the same environment on any day.
# A lock made with another Python minor version may not install: the message says what to do.
$(STAMP): $(ROOT)/pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import re, sys; m = re.search(r'on Python (\d+\.\d+)', open('$(LOCK)').read()); \
	  v = '%d.%d' % sys.version_info[:2]; \
	  m and m.group(1) != v and print(f'warning: requirements.lock was made with Python {m.group(1)}, this is {v}; ' \
	  'if the install fails, use PYTHON=python{m.group(1)} (rm -rf .venv first) or make a lock for it: make lock')"
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e '$(ROOT)'
	$(BIN)/python -m pip check
	touch $(STAMP)

# Fashion-MNIST comes from Debian's package where it can be installed, else the data step
# downloads it; a job that fails prints its log (the workflow profile's show-failed-logs).
demo: $(STAMP)
	$(BIN)/python -m cce check-config $(DEMO_CONFIG)
	@# after a run whose terminal was closed: its stale lock removed, its orphaned jobs stopped (says so)
	$(BIN)/python -m cce recover .
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

# A new lock: pyproject.toml's ranges resolved today in a fresh venv, every version written down.
# Commit it only after `rm -rf .venv && make test` passes with it (README: "Moving to newer versions").
LOCK_VENV := $(ROOT)/.venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	$(LOCK_VENV)/bin/python -m pip install --quiet '$(ROOT)[workflow,test,images]'
	$(LOCK_VENV)/bin/python -m cce lock --out $(LOCK) --extras workflow,test,images
	rm -rf $(LOCK_VENV)
	@echo "Next: rm -rf .venv && make test, then commit requirements.lock with the change that needed it."

clean-demo:
	rm -rf results/features/digits results/features/fashion_mnist results/runs results/notebooks \
	       results/figures results/*.csv results/report.html logs

# The CUDA check and timings for a GPU lease (benchmarks/gpu_check.py, docs/gpu.md): gpu_check.json and
# gpu_check.md in OUT. No venv, no install: a GPU machine's own python3 (torch there) with src/ on the path,
# the wheels of docs/gpu.md on PYTHONPATH. GPU_CHECK_SIZE=quick runs it on a CPU in a minute.
FMNIST_DIR       ?= /usr/share/datasets/fashion-mnist
OUT              ?= $(ROOT)/results/gpu_check
GPU_CHECK_SIZE   ?= full
GPU_CHECK_BUDGET ?= 480
GPU_CHECK_PARTS  ?=
GPU_PYTHON       ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
.PHONY: gpu-check
gpu-check:
	cd $(ROOT) && PYTHONPATH=$(ROOT)/src$${PYTHONPATH:+:$$PYTHONPATH} PYTHONUNBUFFERED=1 $(GPU_PYTHON) \
	  benchmarks/gpu_check.py --size $(GPU_CHECK_SIZE) --fmnist-dir $(abspath $(FMNIST_DIR)) --out $(abspath $(OUT)) \
	  --budget-s $(GPU_CHECK_BUDGET) $(if $(GPU_CHECK_PARTS),--parts $(GPU_CHECK_PARTS))
