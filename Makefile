# The two set-up commands of the README: `make demo` and `make test`. Both create .venv when
# it is missing and install the package into it; nothing else needs to be on the machine but
# Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DB     := .reconciler/demo.db
PLAN   := .reconciler/demo-plan.json
RUN    := $(BIN)/reconciler

.PHONY: demo test test-az lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Venvs and source trees from before the distribution was renamed (0.2.0) hold this checkout as
# `reconciler` too, which `reconciler --version` rightly reports as a second owner of the package.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip uninstall --quiet --yes reconciler 2>/dev/null || true
	rm -rf reconciler.egg-info
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# validate -> plan (saved) -> apply that plan -> plan against a fresh embedded sandbox: the plan
# is printed once, by the plan step (applying a saved plan does not print it again), and the
# last plan must be empty.
demo: $(STAMP)
	@rm -f $(DB) $(DB)-wal $(DB)-shm $(PLAN)
	@echo "== reconciler validate manifests/"
	@$(RUN) validate manifests/
	@echo; echo "== reconciler plan manifests/ --sandbox-db $(DB) --out $(PLAN)"
	@$(RUN) plan manifests/ --sandbox-db $(DB) --out $(PLAN)
	@echo; echo "== reconciler apply $(PLAN) --sandbox-db $(DB)"
	@$(RUN) apply $(PLAN) --sandbox-db $(DB)
	@echo; echo "== reconciler plan manifests/ --sandbox-db $(DB) --detailed-exitcode  (must say: No changes)"
	@$(RUN) plan manifests/ --sandbox-db $(DB) --detailed-exitcode

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
pytest: $(STAMP)
	$(BIN)/pytest -n 2 --dist worksteal -q

test: lint typecheck pytest

# The real Azure CLI against `reconciler sandbox serve` (tests/az; skipped by `make test`). azure-cli
# lives in its own venv: it pins azure-mgmt-resource==24.0.0, reconciler needs >=26, so the two
# cannot share one. The sandbox and the tests run from .venv; the tests call .venv-az/bin/az.
AZ_CLI_VERSION ?= 2.91.0
AZ_VENV        := .venv-az
AZ_STAMP       := $(AZ_VENV)/.installed-$(AZ_CLI_VERSION)

$(AZ_STAMP):
	$(PYTHON) -m venv $(AZ_VENV)
	$(AZ_VENV)/bin/python -m pip install --quiet 'azure-cli==$(AZ_CLI_VERSION)'
	touch $@

test-az: $(STAMP) $(AZ_STAMP)
	RECONCILER_AZ=$(CURDIR)/$(AZ_VENV)/bin/az $(BIN)/pytest tests/az -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(AZ_VENV) .reconciler .mypy_cache .ruff_cache .pytest_cache
