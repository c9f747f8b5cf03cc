# sora-relay command surface. `make help` lists the targets; each installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
# aws-sam-cli pins boto3, click and pydantic, so it and cfn-lint live apart from the project venv.
# They resolve together, so they share one venv.
TOOLS := .tools-venv
SAM_CLI_VERSION := 1.170.0
# cfn-lint 1.54+ no longer runs the SAM transform (misses bad runtimes, dangling !GetAtt).
CFN_LINT_VERSION := 1.53.3
CFN_LINT_SERVERLESS_VERSION := 0.3.5
SAM := SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam
# pip-audit and uv (for the locks in locks/) live apart too.
AUDIT := .audit-venv
PIP_AUDIT_VERSION := 2.10.1
UV_VERSION := 0.13.9

PY_DIRS := $(wildcard layers functions devstack client tests bench scripts)
BUILD_DIR := .aws-sam/build
# The functions run on arm64; an aarch64 .so cannot load on an x86_64 host, so the import check
# uses a second build for the host's architecture.
HOST_ARCH := $(shell uname -m | sed -e 's/^aarch64$$/arm64/')
HOST_BUILD_DIR := $(if $(filter arm64,$(HOST_ARCH)),$(BUILD_DIR),.aws-sam/build-$(HOST_ARCH))

.PHONY: help demo load fuzz openapi bench audit lock run tenants .venv tools lint-template lint test build deploy clean distclean

help: ## list the targets
	@grep -hE '^[a-z.-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

demo: .venv ## local stack, one video end to end (CLI, signed webhook, MP4 checks), then stop
	$(VENV)/bin/python -m devstack demo

# 1,000 tasks over the three provider families, AWS faults, provider faults and worker crashes on:
# 12 to 16 min on a quiet 2-core machine (TASKS=300 for a shorter run).
load: .venv ## 1,000 tasks, 300 at once, AWS/provider faults and worker crashes on: lost, duplicates, per-stage latency, overhead
	$(VENV)/bin/python -m devstack load --tasks $(or $(TASKS),1000)

# The eight benchmarks of docs/performance.md, one after another; each figure printed with its target.
# BENCH_ARGS: e.g. --quick (fewer repeats) or --only cold_start,warm.
bench: .venv build ## cold start, warm overhead, MCP cold/warm, archiving, artifact size, throughput, cost, callback answer (docs/performance.md)
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

run: .venv ## local stack on 127.0.0.1 until Ctrl-C; prints the API URL, keys and ready commands
	$(VENV)/bin/python -m devstack run

# moto's fake credentials: the local stack's AWS is moto, whose address the outputs file names.
tenants: .venv ## scripts/tenants.py against the running `make run` stack, e.g. make tenants ARGS="create --name Acme"
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
		$(VENV)/bin/python scripts/tenants.py --outputs-file .devstack/outputs.json $(or $(ARGS),list)

.venv: $(VENV)/.installed ## the project's dev venv (python 3.11), reinstalled when pyproject.toml changes
$(VENV)/.installed: pyproject.toml locks/dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv --upgrade-deps $(VENV)
	$(VENV)/bin/pip install -qq -e '.[dev]' -c locks/dev.txt
	touch $@

TOOLS_STAMP := $(TOOLS)/.installed-sam$(SAM_CLI_VERSION)-cfnlint$(CFN_LINT_VERSION)-$(CFN_LINT_SERVERLESS_VERSION)
tools: $(TOOLS_STAMP) ## aws-sam-cli and the pinned cfn-lint (+ serverless rules) in .tools-venv
$(TOOLS_STAMP):
	rm -rf $(TOOLS) && $(PYTHON) -m venv --upgrade-deps $(TOOLS)
	$(TOOLS)/bin/pip install -qq aws-sam-cli==$(SAM_CLI_VERSION) cfn-lint==$(CFN_LINT_VERSION) \
		cfn-lint-serverless==$(CFN_LINT_SERVERLESS_VERSION)
	$(TOOLS)/bin/pip check
	touch $@

# Warnings fail too: the template is warning-free; the one known false positive (W3005 on
# resources SAM generates) is ignored in template.yaml's Metadata, with the reason.
# One cfn-lint run: `sam validate --lint` would only run this same pinned cfn-lint again (samcli's
# validate.py calls cfnlint.api.lint on the template), without the serverless rules.
lint-template: tools ## cfn-lint (+ serverless rules, SAM transform); env.json vs template
	$(TOOLS)/bin/cfn-lint template.yaml -a cfn_lint_serverless.rules
	$(TOOLS)/bin/python scripts/check_env_json.py

lint: .venv lint-template ## ruff check + format check over the python dirs, and lint-template
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)

# Four pytest-xdist workers on a 2-core machine: tests/e2e in two groups, each with its own local
# stack and mostly waiting, on two of them, and the in-process tests on the other two, which keep
# the cores busy through those waits (tests/conftest.py's scheduler; -n 3 took 11% longer, -n 5 no
# shorter, measured in one sitting). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 4
test: lint ## lint, then the test suite (installs Debian's chromium for the playground test if missing)
	scripts/install-browser.sh
	$(VENV)/bin/pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS))

build: tools ## sam build (python3.12, arm64) and prove the layer fits the runtime (scripts/check_layer.py)
	scripts/sam-build.sh arm64 $(BUILD_DIR)
ifneq ($(HOST_BUILD_DIR),$(BUILD_DIR))
	scripts/sam-build.sh $(HOST_ARCH) $(HOST_BUILD_DIR)
endif
	$(TOOLS)/bin/python scripts/check_layer.py --build-dir $(BUILD_DIR) --arch arm64 \
		--import-build-dir $(HOST_BUILD_DIR)

# The first deploy needs ProviderApiKey: `make deploy GUIDED=1` asks for it with hidden input and
# saves the other answers to samconfig.toml (never the key); later deploys keep its old value.
deploy: build ## sam deploy with samconfig.toml (first time: make deploy GUIDED=1)
	$(SAM) deploy --template-file $(BUILD_DIR)/template.yaml $(if $(GUIDED),--guided)

openapi: .venv ## write docs/openapi.yaml from the code (the test suite fails when the committed copy differs)
	$(VENV)/bin/python scripts/openapi.py

fuzz: .venv ## schemathesis' CLI against the local stack with docs/openapi.yaml (1,000+ requests): no 5xx, 4xx in the error shape, keys enforced
	$(VENV)/bin/python -m devstack.fuzz --requests $(or $(REQUESTS),1000)

AUDIT_STAMP := $(AUDIT)/.installed-pipaudit$(PIP_AUDIT_VERSION)-uv$(UV_VERSION)
$(AUDIT_STAMP):
	rm -rf $(AUDIT) && $(PYTHON) -m venv --upgrade-deps $(AUDIT)
	$(AUDIT)/bin/pip install -qq pip-audit==$(PIP_AUDIT_VERSION) uv==$(UV_VERSION)
	$(AUDIT)/bin/pip check
	touch $@

# Needs the vulnerability service (PyPI's JSON API or OSV); it fails, never passes, when that
# cannot be reached (docs/security.md, Dependencies).
audit: $(AUDIT_STAMP) ## lock check + pip-audit over locks/layer.txt and locks/dev.txt
	$(AUDIT)/bin/python scripts/audit.py audit $(if $(AUDIT_SERVICE),--service $(AUDIT_SERVICE))

lock: $(AUDIT_STAMP) ## re-resolve locks/layer.txt and locks/dev.txt after changing pyproject or requirements
	$(AUDIT)/bin/python scripts/audit.py lock

clean: ## remove build output and caches
	rm -rf .aws-sam .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./$(TOOLS) -prune -o -path ./$(AUDIT) -prune \
		-o -name __pycache__ -type d -prune \
		-exec rm -rf {} +

distclean: clean ## also remove the venvs
	rm -rf $(VENV) $(TOOLS) $(AUDIT)
