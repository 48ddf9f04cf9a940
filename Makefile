# One task entry point for people, the README and CI.
#   make run    install on first run, then serve on the embedded defaults (bundled sample KB)
#   make test   install on first run (with dev tools), then run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch first, from its CPU build: a bare `torch` requirement pulls a multi-GB CUDA build.
# Outside this network, point TORCH_INDEX at https://download.pytorch.org/whl/cpu (or a mirror of it).
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: run test test-fast lint bench eval install dev clean servers messages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/helpdesk-assist serve

test: $(VENV)/.installed-dev
	scripts/test_servers.sh up
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

eval: $(VENV)/.installed
	$(BIN)/helpdesk-assist eval --kb ../shared/datasets/rutube/knowledge_base.xlsx \
		--cases ../shared/datasets/rutube/cases_dev.xlsx --folds 5

bench: $(VENV)/.installed-dev
	PYTHONPATH=. $(BIN)/python bench/bench_engine.py

servers:
	scripts/test_servers.sh up

# After adding or changing a text people read: refresh plugin/i18n/locale/*/LC_MESSAGES/messages.po,
# then write the Russian wording of the new keys there (tests/plugin/test_i18n.py checks).
messages: $(VENV)/.installed-dev
	$(BIN)/python scripts/messages.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache *.egg-info
