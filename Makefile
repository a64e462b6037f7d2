# The two commands of the README:  `make demo`  and  `make test`.
# Both build .venv from the project's own files first (idempotent).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.tgsample-installed
PLUGINS = $(wildcard plugins/*/pyproject.toml)

.PHONY: install demo test docs
install: $(STAMP)

$(STAMP): pyproject.toml $(PLUGINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23.2"
	$(BIN)/python -m pip install -q -e ".[dev]" $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(STAMP)

demo: install
	$(BIN)/tgsample demo --out outputs/demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

docs: install
	$(BIN)/mkdocs serve
