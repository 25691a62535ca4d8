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
	$(BIN)/fxp inspect mnist_cnn
	$(BIN)/fxp plan mnist_cnn --data mnist5k --target-sqnr 30 --out out/mnist_cnn_plan.json
	$(BIN)/fxp simulate mnist_cnn --plan out/mnist_cnn_plan.json --data mnist5k
	$(BIN)/fxp report mnist_cnn --plan out/mnist_cnn_plan.json --data mnist5k --out out/report
	$(BIN)/fxp export golden mnist_cnn --plan out/mnist_cnn_plan.json --data mnist5k -n 4 --out out/golden

test: setup
	CI=true $(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	$(BIN)/python benchmarks/bench_numbers.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
