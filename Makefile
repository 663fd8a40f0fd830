# The commands the README shows. Everything runs in .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/data

.PHONY: install lint test test-realdata test-faults test-load test-triton gpu-smoke test-all demo bench experiments clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev,export,serve,experiments,jpeg]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its test tools

lint: $(STAMP)  ## ruff (rules and formatting, line length 120) and mypy over the package
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/alexnet

test: $(STAMP)  ## the fast test suite (generated data, no network, CPU only)
	$(BIN)/python -m pytest -q

test-realdata: $(STAMP)  ## tests on the real MNIST and CIFAR-10 copies in $(DATA)
	ALEXNET_DATA_ROOT=$(DATA) $(BIN)/python -m pytest -q -m realdata

test-faults: $(STAMP)  ## fault injection: kill -9, full and read-only disks (tmpfs, as root), hostile inputs, properties
	$(BIN)/python -m pytest -q -m faults

test-load: $(STAMP)  ## alexnet serve under 16 concurrent clients (2 x 12 s, loopback), hostile uploads mixed in
	$(BIN)/python -m pytest -q -m load -s

test-triton: $(STAMP)  ## the Triton LRN kernels against the eager formula, on the CPU under Triton's interpreter
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q -m triton

gpu-smoke: $(STAMP)  ## benchmarks/gpu.sh at toy size on this machine (CUDA-only rows say so); results in $(OUT)
	benchmarks/gpu.sh --smoke --out $(or $(OUT),runs/gpu-smoke)

demo: $(STAMP)  ## train on the bundled CIFAR-10 sample, evaluate, classify a few images
	$(BIN)/alexnet demo

bench: $(STAMP)  ## time-to-accuracy of the shipped recipes on the real data (LeNet-5 over 3 seeds; about 15 min)
	$(BIN)/python benchmarks/time_to_accuracy.py --data-root $(DATA) --only lenet5_mnist --seeds 0 1 2
	$(BIN)/python benchmarks/time_to_accuracy.py --data-root $(DATA) --only cifar_18pct_cifar10 --seeds 0

experiments: $(STAMP)  ## the protocol's (v2) experiments with their defaults on the real data, then the report (about 10 hours on 2 CPU cores)
	ALEXNET=$(BIN)/alexnet benchmarks/paper_experiments.sh $(DATA) runs/paper

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
