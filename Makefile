# Two commands for a fresh machine:
#   make demo   sets up .venv and runs the main job on the embedded default
#   make test   sets up .venv and runs the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"

demo: setup
	$(BIN)/fxp --help
	$(BIN)/fxp format "ap_fixed<8,3>"
	$(BIN)/fxp quantize "fixed<8,4>" 0.3 -1.7 2.5 9.0 --rounding half_even --overflow saturate
	$(BIN)/python -m pytest -q -p no:cacheprovider fxp/core fxp/ops

test: setup
	CI=true $(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	$(BIN)/python benchmarks/bench_numbers.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
