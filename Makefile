# runbook.release — two commands do everything on a fresh Debian 12 machine where you are root:
#   make demo   installs what is missing, brings the sandbox up and releases v1.2.3 with playbooks/release.yml
#   make test   installs what is missing and runs every check (exits non-zero on any failure)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Only this working tree and the bundled collections: an installed copy elsewhere must never shadow it.
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections
export ANSIBLE_FORCE_COLOR := 0
PYTEST := $(VENV)/bin/pytest -p no:cacheprovider
DEMO_VERSION ?= v1.2.3

.PHONY: help deps sandbox sandbox-reset down demo test lint sanity unit integration molecule e2e lifecycle bench constraints \
	changelog clean lane-a lane-b e2e-a e2e-b unit-bulk unit-timing callback-b

help:
	@echo "make demo    bring the sandbox up and release $(DEMO_VERSION) (playbooks/release.yml)"
	@echo "make test    every check: lint, sanity, unit, sandbox integration, end-to-end"
	@echo "make bench   benchmarks (not part of make test); figures are printed"
	@echo "make down    stop and remove everything the sandbox started"

deps:
	@scripts/bootstrap

sandbox: deps
	@scripts/sandbox up

sandbox-reset: deps
	@scripts/sandbox up --reset

down:
	@scripts/sandbox down

demo: sandbox
	ansible-playbook playbooks/release.yml -e version=$(DEMO_VERSION)
	@curl -fsS http://127.0.0.1:8080/api/version && echo

# Order: lint, sanity and the unit tests at the same time (scripts/concurrently: they share nothing and need no
# sandbox), except the unit tests marked `timing` (they judge thread schedules by the clock, and failed with lint and
# sanity beside them), which run next on their own; then the sandbox-backed tests in two lanes at the same time, each
# on its own copy of the demo stack (scripts/sandbox --stack a|b: own compose project, ports, database and stand-ins;
# registry, PostgreSQL and S3 shared), and the lifecycle test (down/up) last. Much of a runbook's time is waiting
# (health checks, monitor windows, soak), so two lanes end far sooner than one. Each stage is timed (scripts/timed
# prints "timing: <stage> took N s"); a failure fails the run.
#   lane a (stack a): the sandbox's own tests, integration targets and molecule scenarios (they use stack a's fixed
#     addresses), E2E_A
#   lane b (stack b): the callback's tests (they need only PostgreSQL), then E2E_B, with RUNBOOK_SANDBOX_STACK=b
#     (tests/runbook_e2e.py adds tests/e2e/inventory-stack-b)
CONCURRENT_STAGES := lint sanity unit-bulk
E2E_A := tests/e2e/test_ansible_runner.py tests/e2e/test_collection_resolution.py \
	tests/e2e/test_execution_environment.py tests/e2e/test_galaxy_package.py
E2E_B := tests/e2e/test_release_runbooks.py tests/e2e/test_rollback.py tests/e2e/test_migrate.py \
	tests/e2e/test_scale.py tests/e2e/test_disaster_recovery.py tests/e2e/test_first_deploy.py
E2E_ALL := $(sort $(wildcard tests/e2e/test_*.py))
test: deps
	@[ "$(sort $(E2E_A) $(E2E_B))" = "$(E2E_ALL)" ] && [ $(words $(E2E_A) $(E2E_B)) = $(words $(E2E_ALL)) ] || \
	  { echo "make test: every tests/e2e/test_*.py must be in exactly one of E2E_A and E2E_B (Makefile)" >&2; exit 1; }
	@scripts/timed "lint+sanity+unit" scripts/concurrently $(CONCURRENT_STAGES)
	@scripts/timed unit-timing $(MAKE) --no-print-directory unit-timing
	@scripts/timed "lanes" scripts/concurrently lane-a lane-b
	@scripts/timed lifecycle $(MAKE) --no-print-directory lifecycle
	@echo "make test: all checks passed"

lane-a:
	@for stage in integration molecule e2e-a; do \
	  scripts/timed $$stage $(MAKE) --no-print-directory $$stage SANDBOX_TESTS=tests/sandbox || exit 1; done

lane-b:
	@for stage in callback-b e2e-b; do scripts/timed $$stage $(MAKE) --no-print-directory $$stage || exit 1; done

lint: deps
	yamllint --strict .
	antsibull-changelog lint
	ansible-lint --offline --profile production --strict
	ansible-playbook --syntax-check playbooks/*.yml
	ansible-inventory -i inventories/staging --list >/dev/null
	ansible-inventory -i inventories/local-ssh --list >/dev/null
	ansible-inventory -i inventories/production --list >/dev/null
	ansible-playbook -i inventories/production --syntax-check playbooks/*.yml

sanity: deps
	scripts/sanity

unit: deps
	$(PYTEST) tests/unit

# make test's two halves of `unit` (pytest exits 5 when a marker selects nothing: that fails too).
unit-bulk: deps
	$(PYTEST) -m "not timing" tests/unit

unit-timing: deps
	$(PYTEST) -m timing tests/unit

# The pytest suites that need the sandbox up but no particular stack state (make test's lane a runs tests/sandbox,
# lane b tests/callback).
SANDBOX_TESTS ?= tests/sandbox tests/callback
integration: sandbox-reset
	$(PYTEST) --durations=10 $(SANDBOX_TESTS)
	scripts/integration

molecule: sandbox-reset
	scripts/molecule

# Every end-to-end test on stack a, one after another (make test splits them over its two lanes: E2E_A, E2E_B).
e2e: sandbox-reset
	$(PYTEST) --durations=20 tests/e2e

e2e-a: sandbox-reset
	$(PYTEST) --durations=20 $(E2E_A)

callback-b: deps
	RUNBOOK_SANDBOX_STACK=b scripts/sandbox up
	RUNBOOK_SANDBOX_STACK=b $(PYTEST) --durations=10 tests/callback

e2e-b: deps
	@# No --reset: the first module's fresh_sandbox resets stack b (tests/runbook_e2e.py).
	RUNBOOK_SANDBOX_STACK=b scripts/sandbox up
	RUNBOOK_SANDBOX_STACK=b $(PYTEST) --durations=20 $(E2E_B)

lifecycle: sandbox
	$(PYTEST) tests/lifecycle

changelog: deps
	scripts/changelog

bench: sandbox-reset
	@# '-': a benchmark that misses its target says so (and exits 1) without hiding the others' figures.
	-$(VENV)/bin/python bench/bench_compose_rollout.py
	-$(VENV)/bin/python bench/bench_migration_apply.py
	-$(VENV)/bin/python bench/bench_deployment_record.py
	-$(VENV)/bin/python bench/bench_pg_backup.py
	-$(VENV)/bin/python bench/bench_release_gate.py
	-$(VENV)/bin/python bench/bench_smoke_check.py
	-$(VENV)/bin/python bench/bench_preflight.py
	-$(VENV)/bin/python bench/bench_release.py
	-$(VENV)/bin/python bench/bench_rollback.py

constraints: deps
	{ echo "# Generated by 'pip freeze' from a .venv built with requirements/dev.txt; refresh with 'make constraints'."; \
	  $(VENV)/bin/pip freeze --exclude-editable; } > requirements/constraints.txt

clean:
	rm -rf tests/output .pytest_cache .hypothesis runbook-release-*.tar.gz
