# The two commands of the README:  `make demo`  and  `make test`.
# Both build .venv from the project's own files first (idempotent).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.tgsample-installed
PLUGINS = $(wildcard plugins/*/pyproject.toml)
# Where PyTorch comes from. Empty: PyPI (on Linux, the CUDA build and NVIDIA's libraries). On a machine
# without a GPU:  make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install demo test docs
install: $(STAMP)

$(STAMP): pyproject.toml $(PLUGINS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23.2"
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install -q torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]" $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(STAMP)

demo: install
	$(BIN)/tgsample demo --out outputs/demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

docs: install
	$(BIN)/mkdocs serve
