# Two entry points, each working on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
FS := $(VENV)/bin/fraudstream
DEMO_SECONDS ?= 60
# e.g. `make demo DEMO_ARGS=--keep`: the processor and the analyst console stay up after the summary
DEMO_ARGS ?=

.PHONY: demo test setup system-deps services lint bench down clean

demo: setup services
	$(FS) demo --duration $(DEMO_SECONDS) $(DEMO_ARGS)

test: setup
	scripts/run-tests.sh

setup: system-deps $(VENV)/.installed

system-deps:
	@scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

services: setup
	$(FS) services up
	$(FS) topics create
	$(FS) db init

lint: setup
	$(VENV)/bin/ruff check fraudstream tests bench

bench: setup services
	@for script in bench/bench_*.py; do $(VENV)/bin/python $$script || exit 1; done

down:
	$(FS) services down

clean: down
	rm -rf .fraudstream
