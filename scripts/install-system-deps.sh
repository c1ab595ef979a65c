#!/usr/bin/env bash
# Installs what the tests and the demo need from Debian and npm, only what is missing, and
# starts Redis and PostgreSQL on their default loopback ports if nothing answers there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

need_apt=()
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv python3-dev)
command -v R >/dev/null 2>&1 || need_apt+=(r-base-core)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)   # llama-cpp-python builds from source
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
# rpy2 builds against the R headers
dpkg -s r-base-dev >/dev/null 2>&1 || need_apt+=(r-base-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing from Debian: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v configurable-http-proxy >/dev/null 2>&1; then
  echo "installing configurable-http-proxy from npm"
  $SUDO npm install -g --silent configurable-http-proxy >/dev/null
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "starting redis-server on 127.0.0.1:6379"
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "starting PostgreSQL"
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start
fi

# The tests create and drop their own databases as user postgres over 127.0.0.1 with no
# password; a fresh Debian cluster asks for one, so let loopback connections in (test machines).
if ! PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  echo "letting loopback connections into PostgreSQL as postgres without a password ($hba)"
  $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
fi
