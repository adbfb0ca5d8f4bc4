# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install geosam, run the main job on the embedded example
#   make test   - create .venv, install geosam with dev tools, run ruff, mypy and pytest
#   make bench  - the benchmarks of bench/ (BENCH_ARGS=--quick for a scaled-down run)
#   make qgis-plugin - dist/geosam_provider.zip, the QGIS plugin for Plugins > Install from ZIP
#   make gpu-check - on a machine with a CUDA GPU: the GPU tests and the GPU speed figures
#
# torch is pinned here (not in pyproject.toml) so that a fresh CPU environment gets the CPU
# wheel without CUDA packages, while `pip install` into an environment that already has a CUDA
# torch leaves it alone. Set TORCH_INDEX to a wheel index (e.g. PyTorch's CPU index) if your
# pip does not find a CPU build by default.

PYTHON ?= python3
VENV ?= .venv
TORCH_PIN ?= torch==2.13.0 torchvision==0.28.0
TORCH_INDEX ?=
BIN := $(VENV)/bin

.PHONY: install test lint demo bench clean qgis-plugin gpu-check

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check geosam tests examples bench
	$(BIN)/ruff format --check geosam tests examples bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

demo: install
	$(BIN)/python examples/demo.py

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

gpu-check: install
	@$(BIN)/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'make gpu-check: torch sees no CUDA GPU here')"
	$(BIN)/pytest -q -rA tests/test_cuda.py
	$(BIN)/python -m bench --only model_speed --quick

qgis-plugin: install
	$(BIN)/geosam qgis package dist/geosam_provider.zip

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
