# Two entry points, each working on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
FS := $(VENV)/bin/fraudstream
DEMO_SECONDS ?= 60

.PHONY: demo test setup system-deps services lint bench down clean docker docker-images compose-env

demo: setup services
	$(FS) demo --duration $(DEMO_SECONDS)

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

# Docker (compose.yaml). IMAGES=local: the images built here from Debian packages, no registry needed.
docker:
	@scripts/install-docker.sh

docker-images: docker
	scripts/docker-images.sh $(if $(filter local,$(IMAGES)),--local)

compose-env:
	@scripts/compose-env.sh $(if $(filter local,$(IMAGES)),--local-images)
