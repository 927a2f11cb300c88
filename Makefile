# Two commands: `make run` (install, ingest the samples when the store is empty, serve the UI)
# and `make test` (install with the test extra, run the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLES ?= sample_docs

.PHONY: run test install install-test system-test-deps lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools

# torch is installed alone first, pinned, so pip takes the CPU build rather than a CUDA one.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-test-deps

# Debian packages the tests use: headless Chromium for the browser test (never a downloaded
# browser), Tesseract for the OCR test and strace for the no-network test of `rag ui`.
system-test-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v tesseract >/dev/null 2>&1 || missing="$$missing tesseract-ocr"; \
	command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "not installed:$$missing (apt-get install$$missing); their tests will be skipped"; exit 0; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: install
	$(BIN)/ingest $(SAMPLES) --if-empty
	$(BIN)/rag ui

# The whole suite with the embedded store, then the integration tests again against a real
# `chroma run` server on 127.0.0.1 that the tests start (tests/integration/server_pass.py).
test: install-test
	$(BIN)/python -m pytest -q
	RAG_TEST_CHROMA=server $(BIN)/python -m pytest -q tests/integration

lint: install-test
	$(BIN)/ruff check rag ingest ui tests bench
	$(BIN)/ruff format --check rag ingest ui tests bench

clean:
	rm -rf $(VENV) .pytest_cache
