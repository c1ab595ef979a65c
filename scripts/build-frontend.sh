#!/usr/bin/env bash
# Builds the JupyterLab / Notebook 7 extension (frontend/) into rsql_magic/labextension and
# makes the venv's JupyterLab load it from there: what `make setup` runs after the venv exists.
#
#   scripts/build-frontend.sh [--no-link] [VENV]    (default .venv)
#
# --no-link builds only (what `make dist` runs, with the build tools' own venv, which has no
# JupyterLab to link into).
#
# npm ci installs exactly frontend/package-lock.json's versions (a reproducible build);
# jupyter-builder (the venv's, which JupyterLab 4.6's `jupyter labextension build` calls) builds
# the prebuilt extension against the core packages it shares with JupyterLab. The venv then gets
# a link to the built folder, as `jupyter labextension develop` makes one, so a rebuild shows
# after a browser reload. Built files are git-ignored; the wheel ships them (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
link=1
if [ "${1:-}" = "--no-link" ]; then
  link=0
  shift
fi
venv=$(cd "${1:-.venv}" && pwd)
name="@rsql-assistant/jupyterlab"

if ! command -v npm >/dev/null 2>&1; then
  echo "build-frontend: npm is needed (Node.js ^20.19 or >=22.12); scripts/install-system-deps.sh test installs it" >&2
  exit 1
fi
(
  cd frontend
  # node_modules/.package-lock.json is npm's record of the last install: newer than the lock
  # file means node_modules already holds exactly what the lock file says
  if [ ! node_modules/.package-lock.json -nt package-lock.json ]; then
    npm ci --no-fund --no-audit --loglevel=error
  fi
  npm run --silent build:lib
  "$venv/bin/jupyter-builder" build .
)
# how `pip install` tells JupyterLab where the extension came from; whatever the builder did
cp frontend/install.json rsql_magic/labextension/install.json

if [ "$link" = 0 ]; then
  echo "build-frontend: $name built into rsql_magic/labextension"
  exit 0
fi
target="$venv/share/jupyter/labextensions/$name"
mkdir -p "$(dirname "$target")"
# a copy an earlier `pip install` put there (the wheel's shared data) gives way to the link
rm -rf "$target"
ln -s "$PWD/rsql_magic/labextension" "$target"
echo "build-frontend: $name built into rsql_magic/labextension and linked into $venv"
