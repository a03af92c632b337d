# The two set-up commands of the README: `make demo` and `make test`. Both create .venv when
# it is missing and install the package into it; nothing else needs to be on the machine but
# Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DB     := .reconciler/demo.db
RUN    := $(BIN)/reconciler

.PHONY: demo test lint typecheck pytest bench clean

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

# validate -> plan -> apply -> plan against a fresh embedded sandbox; the last plan must be empty.
demo: $(STAMP)
	@rm -f $(DB) $(DB)-wal $(DB)-shm
	@echo "== reconciler validate manifests/"
	@$(RUN) validate manifests/
	@echo; echo "== reconciler plan manifests/ --sandbox $(DB)"
	@$(RUN) plan manifests/ --sandbox $(DB)
	@echo; echo "== reconciler apply manifests/ --sandbox $(DB) --auto-approve"
	@$(RUN) apply manifests/ --sandbox $(DB) --auto-approve
	@echo; echo "== reconciler plan manifests/ --sandbox $(DB) --detailed-exitcode  (must say: No changes)"
	@$(RUN) plan manifests/ --sandbox $(DB) --detailed-exitcode

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
