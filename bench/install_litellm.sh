#!/usr/bin/env bash
# Install LiteLLM's proxy (1.109.1) into its own venv, bench/.venv-litellm, for the side-by-side
# benchmark. Never into the project's .venv. Its pins do not resolve on this registry, so the
# requirements (bench/litellm-requirements.txt, two pins relaxed) go first, then litellm --no-deps.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-litellm"
py="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$here/litellm-requirements.txt"
"$venv/bin/pip" install -q --no-deps "litellm==1.109.1"
"$venv/bin/python" -c "import importlib.metadata as m; print('litellm', m.version('litellm'), 'installed in', '$venv')"
