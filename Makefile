# kloudctl: every target does its own set-up, so a fresh clone needs nothing else.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup system venv tools lint typecheck pytest test demo clean

setup: system venv tools

system:
	@scripts/setup-system.sh

venv:
	@scripts/setup-venv.sh

tools: venv
	@scripts/tools.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --offline -q

typecheck: venv
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test: setup lint typecheck pytest

demo: setup
	@scripts/demo.sh

clean:
	rm -rf $(VENV) .tools .state .pytest_cache .mypy_cache .ruff_cache
