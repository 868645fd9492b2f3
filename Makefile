# dangol — `make` lists the targets. Every target installs uv and the locked environment first.
.DEFAULT_GOAL := help
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3.11

.PHONY: help install demo test test-fast lint format serve bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

# Bytecode compiled once at install, so a command does not compile the libraries' sources
# each time it starts: with PYTHONDONTWRITEBYTECODE set (CI images, some shells) Python never
# caches it, and compiling cost a warm `dangol score` ~7 s of CPU here (docs/benchmarks.md).
.venv/.compiled: .venv/.synced
	$(UV) sync --frozen --inexact --compile-bytecode --quiet
	$(UV) run --frozen --no-sync python -m compileall -q -j 0 features flows models serving bench >/dev/null
	@touch $@

# the tests also need the `spark` group (PySpark, SQLGlot); the default environment stays lean
.venv/.synced-spark: .venv/.synced
	$(UV) sync --frozen --inexact --group spark --compile-bytecode --quiet
	@touch $@

install: .venv/.synced .venv/.compiled ## install uv (if missing) and the locked environment

demo: install ## run the whole pipeline on the embedded synthetic shop and summarise
	$(UV) run --frozen dangol demo

test: .venv/.synced-spark ## run the tests (unit and integration: real MLflow, Prefect, HTTP server, Spark)
	$(UV) run --frozen --no-sync pytest

test-fast: .venv/.synced-spark ## run the tests without the slow integration layer
	$(UV) run --frozen --no-sync pytest -m "not slow"

lint: install ## ruff check and format check
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: install ## ruff format and import sorting
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

serve: install ## start the scoring service (uses DANGOL_TOKEN, or makes and prints a token)
	@token="$${DANGOL_TOKEN:-$$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')}"; \
	[ -n "$$DANGOL_TOKEN" ] || echo "callers send: Authorization: Bearer $$token"; \
	DANGOL_TOKEN="$$token" $(UV) run --frozen dangol serve

bench: install .venv/.synced-spark ## run every benchmark (~25 min, not part of CI; serving needs wrk); see docs/benchmarks.md
	$(UV) run --frozen --no-sync python -m bench.run

clean: ## remove generated data, models, exports and Prefect state
	rm -rf data outputs .prefect mlruns/* .venv/.synced .venv/.synced-spark .venv/.compiled
