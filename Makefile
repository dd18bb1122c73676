# kloudctl: every target does its own set-up, so a fresh clone needs nothing else.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup system venv tools lock lint typecheck pytest test demo fresh-check clean

setup: system venv tools

system:
	@scripts/setup-system.sh

venv:
	@scripts/setup-venv.sh

tools: venv
	@scripts/tools.sh

# Re-resolve the whole dependency tree (with hashes) from pyproject.toml's pins.
lock: venv
	@scripts/lock.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --offline -q

typecheck: venv
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest --durations=30 $(PYTEST_ARGS)

test: setup lint typecheck pytest

demo: setup
	@scripts/demo.sh

# What a newcomer sees: a new clone, none of the project's caches, `make demo` then
# `make test`, each stage timed. FRESH_CHECK_ARGS=--keep keeps the clone.
fresh-check:
	@scripts/fresh-check.sh $(FRESH_CHECK_ARGS)

clean:
	rm -rf $(VENV) .tools .state .pytest_cache .mypy_cache .ruff_cache
