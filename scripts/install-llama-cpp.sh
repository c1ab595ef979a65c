#!/usr/bin/env bash
# Installs the pinned llama-cpp-python into a virtualenv, built for a baseline x86-64 CPU.
#
# Why not a plain `pip install`: llama-cpp-python ships only a source distribution, and its
# default build uses -march=native (GGML_NATIVE=ON). Two reasons not to (docs/local-model.md):
# on an Intel Xeon with AMX (amx_tile/int8/bf16) such a build of 0.3.36 compiles in llama.cpp's
# AMX matrix backend, which segfaults (`ldtilecfg` in ggml_backend_amx_mul_mat) on any prompt
# longer than one token; AVX-512 is not the cause (a build with every AVX-512 kernel and no AMX
# answers there). And a native wheel uses every instruction the build machine has while pip
# caches it, so it travels to CPUs that lack them (SIGILL). So we build for a baseline CPU, once
# per (version, flags), with pip's wheel cache bypassed, into a cache of our own keyed by both.
#
#   scripts/install-llama-cpp.sh [PYTHON]       baseline: AVX2 + FMA + F16C, no AVX-512
#   RSQL_LLAMA_NATIVE=1 scripts/...             opt in to a build for this machine's CPU
#   CMAKE_ARGS="..." scripts/...                your own flags (used as given)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}

# the one pin lives in pyproject.toml's `local` extra
version=$("$PY" - <<'PYEOF'
import re, tomllib
with open("pyproject.toml", "rb") as f:
    extra = tomllib.load(f)["project"]["optional-dependencies"]["local"]
pin = next(r for r in extra if r.startswith("llama-cpp-python"))
print(re.fullmatch(r"llama-cpp-python==([\w.]+)", pin).group(1))
PYEOF
)

if [ -n "${CMAKE_ARGS:-}" ]; then
  flags="$CMAKE_ARGS"
elif [ "${RSQL_LLAMA_NATIVE:-0}" = "1" ]; then
  flags="-DGGML_NATIVE=ON"
elif [ "$(uname -m)" = "x86_64" ]; then
  flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"
else
  flags="-DGGML_NATIVE=OFF"
fi

if "$PY" - "$version" "$flags" <<'PYEOF'
import json, sys
from importlib import metadata
from pathlib import Path
try:
    dist = metadata.distribution("llama-cpp-python")
except metadata.PackageNotFoundError:
    sys.exit(1)
stamp = Path(sys.prefix) / "rsql-llama-build.json"
ok = dist.version == sys.argv[1] and stamp.exists() and json.loads(stamp.read_text())["flags"] == sys.argv[2]
sys.exit(0 if ok else 1)
PYEOF
then
  echo "llama-cpp-python $version already installed ($flags)"
  exit 0
fi

key=$(printf '%s %s %s' "$version" "$flags" "$(uname -m)" | sha256sum | cut -c1-12)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/rsql-assistant/wheels/llama-cpp-python-$version-$key"
if ! ls "$cache"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $version ($flags): about 6 minutes on 2 cores"
  mkdir -p "$cache"
  CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$PY" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
    -w "$cache" "llama-cpp-python==$version"
fi
"$PY" -m pip install -q --force-reinstall --no-deps "$cache"/llama_cpp_python-*.whl
"$PY" -m pip install -q "llama-cpp-python==$version"   # its own dependencies (numpy, jinja2, ...)
"$PY" - "$version" "$flags" <<'PYEOF'
import json, sys
from pathlib import Path
stamp = Path(sys.prefix) / "rsql-llama-build.json"  # which flags built the installed one
stamp.write_text(json.dumps({"version": sys.argv[1], "flags": sys.argv[2]}))
PYEOF
echo "llama-cpp-python $version installed ($flags)"
