#!/usr/bin/env bash
# Install everything edgec needs on a fresh Debian machine with Python 3.11, then build the
# C runtime with CMake. Idempotent: a second run only checks. Usage: scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

need_apt=()
command -v gcc   >/dev/null 2>&1 || need_apt+=(gcc)
command -v make  >/dev/null 2>&1 || need_apt+=(make)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

extras="verify"
[ "${1:-}" = "--test" ] && extras="test"
echo "setup: pip install -e .[$extras]"
$PY -m pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v "Running pip as the 'root' user" || true
$PY -c "import edgec.runtime._edgec_c" || { echo "setup: the runtime extension did not build" >&2; exit 1; }
command -v cmake >/dev/null 2>&1 || $PY -m pip install -q cmake
echo "setup: building runtime_c with CMake into build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j 2 >/dev/null
echo "setup: done"
