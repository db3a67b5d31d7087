# The two set-up commands of the README:
#   make run    installs the runtime (no torch) and generates music from the bundled model
#   make test   installs everything (CPU torch, onnx, test tools) and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch==2.13.0 takes the CPU wheel on this machine's wheel cache; a bare `torch` would pull the
# multi-GB CUDA build. Elsewhere: make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH  ?= torch==2.13.0
SEED   ?= artifacts/seed.mid
OUT    ?= seed-continuation.mid

.PHONY: run test venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python

run: venv
	$(BIN)/python -m pip install -q .
	$(BIN)/mpx run --backend onnx $(SEED) --notes 256 --seed 0 --out $(OUT)

test: venv
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pytest
