# dermclean: two commands on a fresh machine.
#   make run   - set up .venv, run the whole pipeline (dvc repro) on the embedded default
#   make test  - set up .venv, run the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1
PYTEST_ARGS ?=

.PHONY: run test venv repro clean-outputs help

help:
	@echo "make run   - create .venv, run the whole pipeline on the embedded default (dvc repro)"
	@echo "make test  - create .venv, run the tests (PYTEST_ARGS='-m \"not slow\"' for the fast subset)"

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

run: venv
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || (git init -q && git add -A && \
		git -c user.name=dermclean -c user.email=dermclean@localhost commit -qm "initial commit")
	@test -d .dvc || dvc init -q
	dvc repro
	@echo
	@echo "Done. Where to look:"
	@echo "  metrics:        $(BIN)/dvc metrics show"
	@echo "  MLflow UI:      $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns.db --port 5000"
	@echo "  reports:        reports/shortcut/*.html (Evidently), reports/detection/, reports/removal/"
	@echo "  promotion:      reports/promotion.json"
	@echo "  cleaned data:   data/cleaned/<method>/"

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)
