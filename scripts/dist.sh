#!/usr/bin/env bash
# Builds the sdist and the wheel (what `make dist` runs once the frontend is built):
#
#   scripts/dist.sh [VENV] [OUTDIR]    (defaults .venv and dist)
#
# The wheel carries the prebuilt JupyterLab extension (rsql_magic/labextension, built by
# scripts/build-frontend.sh) as shared data, so `pip install rsql_assistant-*.whl` gives the whole
# product without node. pypa/build makes the sdist, then the wheel from that sdist: a wheel that
# works proves the sdist carries everything too (the built extension is an sdist artifact,
# pyproject.toml). `make dist` passes build/dist-venv, which has `build`; for another venv
# (the tests pass theirs) `build` goes into build/dist-tools, never into that venv. Its isolated
# build environment fetches hatchling from the package index (or pip's cache).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(cd "${1:-.venv}" && pwd)
out=${2:-dist}
name="@rsql-assistant/jupyterlab"

if [ ! -f rsql_magic/labextension/package.json ]; then
  echo "dist: the frontend extension is not built (make dist builds it: scripts/build-frontend.sh)" >&2
  exit 1
fi
tools=build/dist-tools
# pypa/build's own module, not the checkout's build/ folder (make docs and make compat write
# there), which Python would take for a namespace package named build
if ! PYTHONPATH=$tools "$venv/bin/python" -c \
  "import importlib.util as u, sys; sys.exit(u.find_spec('build.__main__') is None)" 2>/dev/null; then
  "$venv/bin/python" -m pip install -q --target "$tools" "build>=1.2"
fi
rm -rf "$out"
PYTHONPATH=$tools "$venv/bin/python" -m build --outdir "$out" . >/dev/null
# the wheel must hold the extension JupyterLab loads and the file that enables the server side
wheel=$(ls "$out"/rsql_assistant-*.whl)
"$venv/bin/python" - "$wheel" "$name" <<'EOF'
import sys, zipfile
wheel, name = sys.argv[1], sys.argv[2]
names = zipfile.ZipFile(wheel).namelist()
need = [f"share/jupyter/labextensions/{name}/package.json",
        f"share/jupyter/labextensions/{name}/install.json",
        "etc/jupyter/jupyter_server_config.d/rsql_assistant.json"]
lost = [n for n in need if not any(x.endswith(n) and ".data/data/" in x for x in names)]
if lost:
    sys.exit(f"dist: {wheel} lacks {', '.join(lost)}")
EOF
ls -1 "$out"
