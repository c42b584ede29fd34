# The project's commands. `make demo` and `make test` work on a fresh machine (README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

export AWS_ENDPOINT_URL ?= http://127.0.0.1:5000
export AWS_ACCESS_KEY_ID ?= testing
export AWS_SECRET_ACCESS_KEY ?= testing
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: install services services-down demo test unit lint

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

services: install
	PYTHON=$(BIN)/python scripts/services.sh up

services-down:
	scripts/services.sh down

# Only the local Redis Clusters (also started by `services`): 7000-7005, TLS on 7100-7102.
.PHONY: redis-cluster redis-cluster-down
redis-cluster:
	scripts/services.sh cluster-up

redis-cluster-down:
	scripts/services.sh cluster-down

demo: services
	$(BIN)/syncer demo

lint: install
	$(BIN)/ruff check syncer tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/cfn-lint template.yaml

# build/lambda (template.yaml's CodeUri) and build/syncer-lambda.zip for the Lambda runtime
.PHONY: package
package: install
	PYTHON=$(BIN)/python scripts/package_lambda.sh

unit: install
	$(BIN)/python -m pytest tests/unit -q

test: lint services
	$(BIN)/python -m pytest

# Benchmarks against the real services (bench/README.md); figures in bench/RESULTS.md.
# About 6 minutes (bench/README.md); the full output also goes to bench/last-run.log.
.PHONY: bench
bench: services
	PYTHON=$(BIN)/python bench/run_all.sh
