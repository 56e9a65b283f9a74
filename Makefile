# Two commands set everything up: `make run` serves the service, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export WORK_DIR ?= $(CURDIR)/.data
export QDRANT_URL ?= $(WORK_DIR)/qdrant
export UPLOAD_SERVICE_HOST ?= 127.0.0.1
export UPLOAD_SERVICE_PORT ?= 8002

.PHONY: run test lint bench load clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	exec $(BIN)/python -m local.serve

test: $(STAMP)
	$(BIN)/ruff check core functions local tests
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m local.bench

load: $(STAMP)
	$(BIN)/python -m local.load --seconds 60 --workspaces 16 --racers 4

lint: $(STAMP)
	$(BIN)/ruff check core functions local tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache
