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

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
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
	$(BIN)/pytest -n 2 -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .reconciler .mypy_cache .ruff_cache .pytest_cache
