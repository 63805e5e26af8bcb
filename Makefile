# Developer and CI entry points. `make test` is what CI runs (through .ci/run).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# pip-installed uv may not be on PATH yet (pyenv needs a rehash); `python3 -m uv` always works.
UV ?= $(shell command -v uv >/dev/null 2>&1 && echo uv || echo python3 -m uv)
SCALE ?= ci
MYPY_PATHS := libs/common/src $(wildcard services/*/src)

.PHONY: help setup test lint fmt bench run

help:
	@echo "make setup        install uv if missing, then uv sync"
	@echo "make test         lint + the whole test suite (what CI runs)"
	@echo "make lint         ruff check, ruff format --check, mypy"
	@echo "make fmt          ruff format + ruff check --fix"
	@echo "make bench        benchmarks (SCALE=ci|tenth|cms, default ci)"
	@echo "make run          the standalone stack: uv run dynamo up"

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet uv
	$(UV) sync --all-packages
	@# gfal2 comes from Debian (scripts/link-gfal2.sh says how); without it, only file:// works.
	@bash scripts/link-gfal2.sh $(UV) || echo "warning: gfal2 not linked:" \
		"storage falls back to file:// only (PosixStorage)" >&2

test:
	bash scripts/test.sh

# All three run even when one fails, so one CI run reports every problem.
lint:
	@status=0; \
	echo "$(UV) run ruff check ."; $(UV) run ruff check . || status=1; \
	echo "$(UV) run ruff format --check ."; $(UV) run ruff format --check . || status=1; \
	echo "$(UV) run mypy $(MYPY_PATHS)"; $(UV) run mypy $(MYPY_PATHS) || status=1; \
	exit $$status

fmt:
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

bench:
	$(UV) run python -m tests.bench.run --scale $(SCALE)

run: setup
	$(UV) run dynamo up
