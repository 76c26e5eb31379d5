#!/usr/bin/env bash
# Installs what the tests need, only what is missing: python3 + pip + venv (for the
# Autobahn runner and the Python emitter), node + npm (for the interop tests),
# redis-server (the Redis bridge tests start their own), the npm packages in tests/node
# and tests/sio (the official Socket.IO clients, the Redis adapter and emitter), again
# when a package-lock.json changed, and tests/py/requirements.txt in tests/py/.venv.
# Idempotent; uses apt-get when run as root, otherwise says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: missing ${need[*]}: install them (sudo apt-get install ${need[*]})" >&2
    exit 2
  fi
fi

# Python peers (an emitter from PyPI) in their own venv, again when the pins change.
venv=tests/py/.venv
if [ ! -x "$venv/bin/python" ] || [ tests/py/requirements.txt -nt "$venv/.installed" ]; then
  echo "setup: pip install -r tests/py/requirements.txt into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements.txt
  touch "$venv/.installed"
fi

for dir in tests/node tests/sio; do
  if [ -f "$dir/package-lock.json" ] && { [ ! -d "$dir/node_modules" ] ||
    [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; }; then
    echo "setup: npm ci in $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
done
