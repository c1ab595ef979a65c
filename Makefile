# `make demo`: set up what the demo needs, then run the demo notebook headless through the proxy.
# `make test`: set up everything the tests need, then run every test (what CI runs).
# `make docs`: build the documentation site into build/docs/html (warnings are errors).
# `make dist`: build the sdist and the wheel (with the JupyterLab extension built in) into dist/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PLOOMBER_STATS_ENABLED := false
export PLOOMBER_VERSION_CHECK_DISABLED := true

.PHONY: demo test test-fast setup setup-demo lint bench compat clean docs docs-record docs-screenshot dist

demo: setup-demo
	$(PY) scripts/run_demo.py

# The unit tests in two workers (pytest-xdist, each test to whichever worker is free), then the
# end-to-end tests in two workers, each test module on one of them (--dist loadfile: a module's
# shared Jupyter server, hub or database stays one), the longest modules first
# (tests/e2e/conftest.py says why; --no-loadscope-reorder keeps that order). Most end-to-end
# time is waiting on servers, kernels and browsers. TEST_WORKERS=0 runs each in one process,
# TEST_WORKERS=4 in four.
TEST_WORKERS ?= 2
UNIT_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))
PYTEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# --durations: the slowest tests of each run, in its log, where the suite's time goes.
# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set (container images set it): else
# each pytest process compiles and assertion-rewrites every test module again (the unit tests'
# collection 9.5 s, 4 s from bytecode an earlier run wrote; the end-to-end half reads what the
# unit half wrote). It goes to __pycache__ folders, which git and the wheel leave out.
TEST_ENV := env -u PYTHONDONTWRITEBYTECODE
test: setup
	$(TEST_ENV) $(PY) -m pytest -ra --durations=15 $(UNIT_PARALLEL) tests/unit; unit=$$?; \
	$(TEST_ENV) $(PY) -m pytest -ra --durations=25 $(PYTEST_PARALLEL) tests/e2e; e2e=$$?; \
	test $$unit -eq 0 && test $$e2e -eq 0

# everything but the slow end-to-end tests (servers, kernels, browsers)
test-fast: setup
	$(TEST_ENV) $(PY) -m pytest -ra -m "not slow"

setup-demo:
	bash scripts/install-system-deps.sh demo
	$(MAKE) --no-print-directory $(VENV)/.installed-demo

setup:
	bash scripts/install-system-deps.sh test
	$(MAKE) --no-print-directory $(VENV)/.installed $(VENV)/.labextension

# llama-cpp-python first, built for a baseline CPU (scripts/install-llama-cpp.sh says why);
# the extras then find it installed
$(VENV)/.installed-demo: pyproject.toml scripts/install-llama-cpp.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	bash scripts/install-llama-cpp.sh $(PY)
	$(PY) -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.installed: pyproject.toml scripts/install-llama-cpp.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	bash scripts/install-llama-cpp.sh $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-demo

# the JupyterLab / Notebook 7 extension (frontend/): built with the venv's jupyter-builder, and
# again after every install (a reinstall may replace the venv's link to it)
FRONTEND := $(shell find frontend/src frontend/style -type f 2>/dev/null) \
	frontend/package.json frontend/package-lock.json frontend/tsconfig.json
$(VENV)/.labextension: $(VENV)/.installed $(FRONTEND) scripts/build-frontend.sh
	bash scripts/build-frontend.sh $(VENV)
	touch $@

# the sdist and the wheel, into dist/: the wheel carries the built JupyterLab extension, so
# `pip install dist/rsql_assistant-*.whl` gives the whole product, with no checkout and no node
# (tests/e2e/test_wheel_install.py installs it into a fresh venv). Built with a venv of its own
# holding only the build tools (scripts/dist-requirements.txt: 32 MB, seconds to make),
# never the test venv (1.9 GB, llama.cpp compiled): a fresh clone needs Python and npm, no more
DIST_VENV := build/dist-venv
$(DIST_VENV)/.installed: scripts/dist-requirements.txt
	test -x $(DIST_VENV)/bin/python || $(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/python -m pip install -q -r scripts/dist-requirements.txt
	touch $@

dist: $(DIST_VENV)/.installed
	bash scripts/build-frontend.sh --no-link $(DIST_VENV)
	bash scripts/dist.sh $(DIST_VENV) dist

# the demo page is executed from docs/_data/demo-replay.jsonl: no proxy, key or model is used
docs: setup
	$(PY) -m sphinx -W --keep-going -n -b html docs build/docs/html
	@echo "open build/docs/html/index.html"

# record the demo page's answers again (through the proxy, as `make demo` runs it)
docs-record: setup-demo
	$(PY) scripts/record_docs_demo.py

# the admin console's picture in the docs, taken by its browser test (which otherwise writes it
# under test-artifacts/, so a test run never rewrites a tracked file)
docs-screenshot: setup
	RSQL_RECORD_DOCS_IMAGES=1 $(PY) -m pytest -q tests/e2e/test_dashboard.py::test_dashboard_in_chromium_through_the_hub

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	bash scripts/install-system-deps.sh bench
	$(PY) bench/run_all.py

# the AI clients users install (Claude Code, Codex, the SDKs, LangChain, jupyter-ai, MCP) at the
# newest versions npm and PyPI serve, beside the suite's oldest and pinned ones, each run against
# a real proxy with the loopback providers: installs into build/compat/ (never .venv or .tools),
# writes the table into docs/users/ai-tools.md, exits 1 naming a client version that fails
compat: setup
	$(PY) scripts/compat.py

clean:
	rm -rf $(VENV) .tools notebooks/*.html .pytest_cache build/docs build/compat \
		frontend/node_modules frontend/lib rsql_magic/labextension dist build/dist-tools build/dist-venv \
		test-artifacts
