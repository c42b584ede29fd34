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

# Every distribution comes from the hash-checked lock (requirements/dev.txt), then the project
# itself without its dependencies. pip prints each download: the first install takes about a minute.
$(VENV)/.installed: pyproject.toml requirements/dev.txt
	@echo "installing the locked dependencies (requirements/dev.txt) into $(VENV); needs PyPI, about a minute the first time"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar off --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The locks, with hashes (README "Updating the locks"). `make lock` keeps every pin that still
# satisfies pyproject.toml and resolves only what changed; `make lock UPGRADE=1` moves every
# pin to the newest version allowed.
LOCK_FLAGS := --quiet --generate-hashes --python-version 3.11 $(if $(UPGRADE),--upgrade)
# The Lambda runtime (template.yaml): python3.11 on x86_64.
LAMBDA_PLATFORM := --python-platform x86_64-manylinux_2_17
.PHONY: lock
lock: install
	$(BIN)/uv pip compile $(LOCK_FLAGS) --universal --extra dev --extra kcl \
		--custom-compile-command 'make lock' -o requirements/dev.txt \
		pyproject.toml requirements/tools.in
	$(BIN)/uv pip compile $(LOCK_FLAGS) $(LAMBDA_PLATFORM) \
		--custom-compile-command 'make lock' -o requirements/lambda.txt pyproject.toml
	$(BIN)/uv pip compile $(LOCK_FLAGS) --universal \
		--custom-compile-command 'make lock' -o requirements/client.txt \
		clients/python/pyproject.toml
	$(BIN)/uv pip compile $(LOCK_FLAGS) $(LAMBDA_PLATFORM) \
		--custom-compile-command 'make lock' -o requirements/lambda-runtime.txt \
		requirements/lambda-runtime.in
	$(BIN)/uv pip compile $(LOCK_FLAGS) --universal \
		--custom-compile-command 'make lock' -o requirements/checkov.txt requirements/checkov.in

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

# SOURCE=kinesis: the table's changes reach the worker through a Kinesis stream, published by
# the test bridge (the emulator cannot stream a table to Kinesis; docs/sources.md).
SOURCE ?= dynamodb
demo: services
ifeq ($(SOURCE),kinesis)
	$(BIN)/python -m tests.kinesis_demo
else ifeq ($(SOURCE),dynamodb)
	$(BIN)/syncer demo
else
	@echo "SOURCE must be dynamodb (the default) or kinesis, got $(SOURCE)" >&2; exit 2
endif

lint: install
	$(BIN)/ruff check syncer tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/cfn-lint template.yaml

# checkov, the security scanner reviewers run on template.yaml (docs/deploy.md, "Security"), in
# its own venv from its own hash-checked lock: its pins (boto3, networkx, packaging) differ from
# ours. --skip-download: no network at scan time. Any failed check fails `make lint`; a check
# that does not apply is skipped in the resource's Metadata with its reason.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov --framework cloudformation --compact --quiet --skip-download
lint: checkov

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	@echo "installing checkov (requirements/checkov.txt) into $(CHECKOV_VENV); needs PyPI the first time"
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --progress-bar off --require-hashes \
		-r requirements/checkov.txt
	touch $@

# The template as deployed by default, then with EnableReindexStateMachine = "true", then with
# StreamSource = kinesis, shared and with KinesisConsumer = enhanced-fan-out: checkov leaves out the resources whose condition is false under the
# parameters' defaults.
.PHONY: checkov
checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV) -f template.yaml
	@mkdir -p build
	sed '/^  EnableReindexStateMachine:/,/^  [A-Za-z]/s/Default: "false"/Default: "true"/' \
		template.yaml > build/template-with-reindex.yaml
	! cmp -s template.yaml build/template-with-reindex.yaml
	$(CHECKOV) -f build/template-with-reindex.yaml
	sed '/^  StreamSource:/,/^  [A-Za-z]/s/Default: dynamodb-streams/Default: kinesis/' \
		template.yaml > build/template-with-kinesis.yaml
	! cmp -s template.yaml build/template-with-kinesis.yaml
	$(CHECKOV) -f build/template-with-kinesis.yaml
	sed '/^  KinesisConsumer:/,/^  [A-Za-z]/s/Default: shared/Default: enhanced-fan-out/' \
		build/template-with-kinesis.yaml > build/template-with-fan-out.yaml
	! cmp -s build/template-with-kinesis.yaml build/template-with-fan-out.yaml
	$(CHECKOV) -f build/template-with-fan-out.yaml

# build/lambda (template.yaml's CodeUri) and build/syncer-lambda.zip for the Lambda runtime
.PHONY: package
package: install
	PYTHON=$(BIN)/python scripts/package_lambda.sh

# build/client/: the syncer-client wheel (clients/python, docs/api.md), built from a copy of its
# sources with the symbolic links followed, so the checkout stays clean.
# tests/integration/test_client_distribution.py installs it in a fresh venv with only
# requirements/client.txt.
.PHONY: client-dist
client-dist: install
	rm -rf build/client && mkdir -p build/client
	cp -RL clients/python build/client/src
	find build/client/src -name __pycache__ -type d -prune -exec rm -rf {} +
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation \
		--wheel-dir build/client build/client/src
	rm -rf build/client/src
	@ls build/client/*.whl

unit: install
	$(BIN)/python -m pytest tests/unit -q

test: lint services lambda-runtime
	$(BIN)/python -m pytest

# AWS's Lambda Runtime Interface Emulator (built with Go) and the runtime's awslambdaric, cached
# under .services/lambda-runtime: tests/integration/test_lambda_runtime.py runs `make package`
# output with them.
.PHONY: lambda-runtime
lambda-runtime: install
	PYTHON=$(BIN)/python scripts/services.sh lambda-runtime

# Benchmarks against the real services (bench/README.md); figures in bench/RESULTS.md.
# About 9 minutes (bench/README.md); the full output also goes to bench/last-run.log.
.PHONY: bench
bench: services
	PYTHON=$(BIN)/python bench/run_all.sh
