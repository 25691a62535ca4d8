# Two commands for a fresh machine:
#   make demo   sets up .venv and runs the main job on the embedded default
#   make test   sets up .venv and runs the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The test setup installs the CPU build of torch first (so that nothing pulls a CUDA build),
# then torchvision without dependencies next to it, so CI checks training and the torchvision
# models too, and Brevitas (QONNX exports, no dependencies: they would pull another torch).
# `make test TORCH=` skips all three.
TORCH ?= torch==2.13.0
TORCHVISION ?= torchvision==0.28.0

.PHONY: setup setup-test demo test bench clean

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

setup-test: setup
ifneq ($(strip $(TORCH)),)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet --no-deps "$(TORCHVISION)"
	$(BIN)/python -m pip install --quiet --no-deps brevitas==0.13.4 dependencies==2.0.1 \
		unfoldNd==0.2.3 onnxoptimizer==0.4.2
endif
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps "tflite==2.18.0" \
		"tflite-micro==0.dev20261023182759" "ai-edge-litert==2.3.0"
	$(BIN)/python -m pip install --quiet flatbuffers pyyaml ml_dtypes protobuf typing-extensions
	$(BIN)/python -m pip install --quiet --no-deps hls4ml==1.3.0 pydigitalwavetools==1.1 \
		quantizers==1.2.2
	$(BIN)/python -m pip install --quiet pyyaml h5py qonnx==1.0.0
	$(BIN)/python -m pip install --quiet -e ".[dist]"

test: setup-test
	CI=true $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

bench: setup
	$(BIN)/python benchmarks/bench_numbers.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
