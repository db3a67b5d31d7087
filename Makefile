# The two set-up commands of the README:
#   make run    installs the runtime (no torch) and generates music from the bundled model
#   make test   runs the torch-free tier in a runtime-only venv, then installs everything (CPU
#               torch, onnx, test tools) and runs the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# the runtime as a user installs it (`pip install .`: no torch, no extras) plus the test tools:
# the torch-free tier runs here, which also proves the runtime never imports torch
RUNTIME_VENV ?= .venv-runtime
RUNTIME_BIN   = $(RUNTIME_VENV)/bin
# torch==2.13.0 takes the CPU wheel on this machine's wheel cache; a bare `torch` would pull the
# multi-GB CUDA build. Elsewhere: make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH  ?= torch==2.13.0
SEED   ?= artifacts/seed.mid
OUT    ?= seed-continuation.mid

.PHONY: run test test-runtime venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python

run: venv
	$(BIN)/python -m pip install -q .
	$(BIN)/mpx run --backend onnx $(SEED) --notes 256 --seed 0 --out $(OUT) --force

test: test-runtime venv web-deps
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pytest

$(RUNTIME_BIN)/python:
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_BIN)/python -m pip install -q --upgrade pip

# A fresh `pip install .` each time (not editable: what a user gets); pytest runs from the
# repository root on tests/runtime, importing the installed mpx.
test-runtime: $(RUNTIME_BIN)/python
	$(RUNTIME_BIN)/python -m pip install -q --force-reinstall --no-deps .
	$(RUNTIME_BIN)/python -m pip install -q . pytest hypothesis
	$(RUNTIME_BIN)/python -m pytest -p no:cacheprovider tests/runtime

# The JavaScript examples (examples/web, examples/node) and their tests: the npm packages pinned
# by examples/package-lock.json, and Debian's Chromium for the page's tests (npm never downloads
# a browser). Quiet and quick when everything is already there. ONNXRUNTIME_NODE_INSTALL=skip:
# onnxruntime-node's postinstall would fetch GPU providers, which fails offline; the CPU one is
# inside the npm package.
.PHONY: web-deps
web-deps:
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	@if [ ! examples/node_modules/.mpx-web-deps -nt examples/package-lock.json ]; then \
	  cd examples && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules/.mpx-web-deps; fi
	@[ -x /usr/bin/chromium ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
