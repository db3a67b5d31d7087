# The two set-up commands of the README. One install mode per virtual environment, so that
# neither command replaces what the other installed:
#   .venv-runtime  mpx installed as a copy of this checkout (`pip install .`, no torch, no extras),
#                  as a user gets it: `make run` generates music from the bundled model there, and
#                  `make test` runs the torch-free tier there first (with pytest added)
#   .venv          everything (CPU torch, onnx, test tools), mpx installed editable (the checkout
#                  itself): `make test` runs the whole suite there
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

.PHONY: run test test-runtime runtime venv screenshot

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python

run: runtime
	$(RUNTIME_BIN)/mpx run --backend onnx $(SEED) --notes 256 --seed 0 --out $(OUT) --force

# MPX_CHECK_CHECKOUT=1: the run fails when the tests changed what `git status` shows (tests/conftest.py)
test: test-runtime venv web-deps
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	MPX_CHECK_CHECKOUT=1 $(BIN)/python -m pytest

$(RUNTIME_BIN)/python:
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_BIN)/python -m pip install -q --upgrade pip

# A fresh copy of this checkout each time (not editable: what a user gets), then its dependencies.
runtime: $(RUNTIME_BIN)/python
	$(RUNTIME_BIN)/python -m pip install -q --force-reinstall --no-deps .
	$(RUNTIME_BIN)/python -m pip install -q .

# pytest runs from the repository root on tests/runtime, importing the installed mpx.
test-runtime: runtime
	$(RUNTIME_BIN)/python -m pip install -q pytest hypothesis
	MPX_CHECK_CHECKOUT=1 $(RUNTIME_BIN)/python -m pytest -p no:cacheprovider tests/runtime

# The picture of the web page that docs/deployment.md and examples/web/README.md show: the tests
# draw the page into a temporary folder; this redraws the tracked file (after `make test`, which
# installs the tools).
screenshot: web-deps
	MPX_WEB_SCREENSHOT=$(CURDIR)/examples/web/screenshot.png $(BIN)/python -m pytest -q tests/test_web.py -k screenshot

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
