#!/usr/bin/env bash
# Installs what `make demo`, `make test` or `make bench` needs from Debian and npm: only what is
# missing, and nothing more. It never changes a system service's configuration and starts no
# service: the tests use the PostgreSQL and Redis a machine already runs on their default
# loopback ports, else they start throw-away instances of their own (tests/conftest.py).
#
#   scripts/install-system-deps.sh demo    R and a compiler (rpy2, llama-cpp-python)
#   scripts/install-system-deps.sh test    + PostgreSQL, Redis, Chromium, Node (configurable-http-proxy)
#   scripts/install-system-deps.sh bench   + wrk, valgrind (bench/count_proxy.py)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-test}
case "$profile" in demo|test|bench) ;; *) echo "usage: $0 demo|test|bench" >&2; exit 2 ;; esac

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

need_apt=()
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv python3-dev)
command -v R >/dev/null 2>&1 || need_apt+=(r-base-core)
dpkg -s r-base-dev >/dev/null 2>&1 || need_apt+=(r-base-dev)   # rpy2 builds against R's headers
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)          # llama-cpp-python builds from source
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
if [ "$profile" != "demo" ]; then
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)
  # R's httr2, for the clients page's R example run through the proxy (tests/e2e/test_ai_tools.py)
  dpkg -s r-cran-httr2 >/dev/null 2>&1 || need_apt+=(r-cran-httr2)
fi
if [ "$profile" = "bench" ]; then
  command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
  command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing from Debian: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ "$profile" != "demo" ]; then
  # JupyterHub's proxy, and the AI coding CLIs users run on a hub (Claude Code, Codex), whose
  # requests the tests send through the proxy: into the checkout (.tools/), not globally; the
  # tests put its bin on PATH. Versions pinned: each is a client whose requests we must read.
  # Each CLI twice: the pinned version (`claude`, `codex` on PATH; moved forward when `make
  # compat` passes on a newer one) and the oldest supported (docs/users/ai-tools.md), under an
  # npm alias beside it (.tools/node_modules/claude-code-oldest, codex-oldest); the suite runs
  # both (tests/e2e/test_client_matrix.py).
  claude_code_pinned=2.1.332 claude_code_oldest=2.0.0
  codex_pinned=0.171.0 codex_oldest=0.1.2505291658
  installed() { node -p "require('./.tools/node_modules/$1/package.json').version" 2>/dev/null || true; }
  node_tools=()
  [ -x .tools/node_modules/.bin/configurable-http-proxy ] || node_tools+=("configurable-http-proxy@4.6.3")
  [ "$(installed @anthropic-ai/claude-code)" = "$claude_code_pinned" ] ||
    node_tools+=("@anthropic-ai/claude-code@$claude_code_pinned")
  [ "$(installed claude-code-oldest)" = "$claude_code_oldest" ] ||
    node_tools+=("claude-code-oldest@npm:@anthropic-ai/claude-code@$claude_code_oldest")
  [ "$(installed @openai/codex)" = "$codex_pinned" ] || node_tools+=("@openai/codex@$codex_pinned")
  [ "$(installed codex-oldest)" = "$codex_oldest" ] ||
    node_tools+=("codex-oldest@npm:@openai/codex@$codex_oldest")
  if [ ${#node_tools[@]} -gt 0 ]; then
    echo "installing into .tools/: ${node_tools[*]}"
    npm install --silent --no-fund --no-audit --save-exact --prefix .tools "${node_tools[@]}" >/dev/null
  fi
  # an alias brings its package's command names too, and npm may link either: `claude` and
  # `codex` on PATH are the pinned versions
  command_of() { node -p "const p = require('./.tools/node_modules/$1/package.json'); '../$1/' + (typeof p.bin === 'string' ? p.bin : p.bin['$2'])"; }
  ln -sfn "$(command_of @anthropic-ai/claude-code claude)" .tools/node_modules/.bin/claude
  ln -sfn "$(command_of @openai/codex codex)" .tools/node_modules/.bin/codex
fi
