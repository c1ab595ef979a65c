# `make demo`: set up, then run the demo notebook headless through the proxy.
# `make test`: set up, then run every test (what CI runs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PLOOMBER_STATS_ENABLED := false
export PLOOMBER_VERSION_CHECK_DISABLED := true

.PHONY: demo test test-fast setup system lint bench clean

demo: setup
	$(PY) scripts/run_demo.py

test: setup
	$(PY) -m pytest -ra

# everything but the slow end-to-end tests (servers, kernels, browsers)
test-fast: setup
	$(PY) -m pytest -ra -m "not slow"

setup: system $(VENV)/.installed

system:
	bash scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) notebooks/*.html .pytest_cache
