# Two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OUT ?= demo-output

.PHONY: demo test install install-dev fuzz lint clean

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

demo: $(VENV)/.installed
	mkdir -p $(OUT)
	$(VENV)/bin/rawedge unprocess samples/boxes_s40.jpg -o $(OUT)/boxes_s40.dng
	$(VENV)/bin/rawedge info $(OUT)/boxes_s40.dng

test: $(VENV)/.installed-dev
	$(VENV)/bin/pytest -n 2 -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check rawedge export runtimes calibration tests

clean:
	rm -rf $(OUT) .pytest_cache
