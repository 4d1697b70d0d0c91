# Two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OUT ?= demo-output

.PHONY: demo test install install-dev fuzz lint clean interop

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The bundled learned model (rawedge/assets/default.onnx) through ONNX Runtime, on the bundled sample.
demo: $(VENV)/.installed
	mkdir -p $(OUT)
	$(VENV)/bin/rawedge infer --runtime ort --overwrite samples/boxes_s40.jpg -o $(OUT)/boxes_s40.dng
	@echo "== the DNG: $(OUT)/boxes_s40.dng"
	$(VENV)/bin/rawedge info $(OUT)/boxes_s40.dng

# tests/test_dng_validate.py builds Adobe's dng_validate once into ~/.cache/rawedge/dng_validate (about 10 s
# with g++ and libjxl-dev headers; -rs prints why it skips where it cannot).
test: $(VENV)/.installed-dev
	$(LINT_IMPORTS)
	$(VENV)/bin/pytest -n 2 -q -rs

# DNG interoperability (README "Formats"): installs darktable and RawTherapee (apt-get) if missing, renders the
# DNG corpus with Adobe's dng_validate -tif, darktable-cli, rawtherapee-cli and LibRaw; contact sheet in
# docs/interop.png, report in runs/interop/report.json. About 1 min on 2 cores once installed.
interop: $(VENV)/.installed-dev
	$(PY) -m interop.run --install

# The long fuzz run (README "Robustness"): FUZZ_CASES hypothesis cases per target, each in an isolated
# worker with a memory limit and a time bound; report in runs/fuzz/report.json. About 20 min on 2 cores.
FUZZ_CASES ?= 10000
fuzz: $(VENV)/.installed-dev
	$(PY) -m fuzz.run --cases $(FUZZ_CASES)

# The layering contracts ([tool.importlinter] in pyproject.toml). import-linter only walks a package's own
# folder, and rawedge.export, .runtimes and .calibration live in export/, runtimes/ and calibration/, so it
# runs in a tree of links that puts them under rawedge/ (tests/test_layering.py builds the same tree).
IMPORT_TREE := $(abspath $(VENV))/import-tree
define LINT_IMPORTS
rm -rf $(IMPORT_TREE) && mkdir -p $(IMPORT_TREE)/rawedge
ln -s $(CURDIR)/rawedge/* $(IMPORT_TREE)/rawedge/
for p in export runtimes calibration; do ln -s $(CURDIR)/$$p $(IMPORT_TREE)/rawedge/$$p; done
cd $(IMPORT_TREE) && $(abspath $(VENV))/bin/lint-imports --no-cache $(CURDIR)/pyproject.toml
endef

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check rawedge export runtimes calibration tests
	$(LINT_IMPORTS)

clean:
	rm -rf $(OUT) .pytest_cache
