#!/usr/bin/env bash
# Install everything edgec needs on a fresh Debian machine with Python 3.11, then build the
# C runtime with CMake. Idempotent: a second run only checks. Usage: scripts/setup.sh [--test]
# (--test also installs the test extras, the ARM cross compilers + qemu-user, and the
# bare-metal arm-none-eabi toolchain + newlib + qemu-system-arm).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh

need_apt=()
command -v gcc   >/dev/null 2>&1 || need_apt+=(gcc)
command -v make  >/dev/null 2>&1 || need_apt+=(make)
# --test: cross compilers and qemu user mode for the hosted ARM targets (tests/targets_arm)
if [ "${1:-}" = "--test" ]; then
  { command -v aarch64-linux-gnu-gcc && [ -e /usr/aarch64-linux-gnu/include/stdio.h ]; } >/dev/null 2>&1 ||
    need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
  { command -v arm-linux-gnueabihf-gcc && [ -e /usr/arm-linux-gnueabihf/include/stdio.h ]; } >/dev/null 2>&1 ||
    need_apt+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
  { command -v qemu-aarch64 && command -v qemu-arm; } >/dev/null 2>&1 || need_apt+=(qemu-user)
  # bare-metal Cortex-M targets (tests/targets_baremetal): toolchain, newlib, qemu-system-arm
  { command -v arm-none-eabi-gcc && [ -e /usr/lib/arm-none-eabi/newlib/rdimon.specs ]; } >/dev/null 2>&1 ||
    need_apt+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
  command -v qemu-system-arm >/dev/null 2>&1 || need_apt+=(qemu-system-arm)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# Python headers (the runtime's cffi extension compiles against them)
if ! $PY -c "import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 1)"; then
  echo "setup: installing Debian packages: python3-dev python3-venv"
  apt-get update -qq && apt-get install -y -qq python3-dev python3-venv
fi
# a Debian system Python refuses pip installs (PEP 668): use a virtual environment instead
if [ "$PY" = python3 ] && [ -e "$($PY -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
  echo "setup: system Python is externally managed; creating .venv"
  $PY -m venv .venv
  PY=.venv/bin/python
fi

extras="verify"
# the tests also train small models with PyTorch (edgec[distill] pins torch==2.13.0, CPU)
[ "${1:-}" = "--test" ] && extras="test,distill"
echo "setup: pip install -e .[$extras]"
if ! $PY -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[$extras]"; then
  echo "setup: pip install failed (see above)" >&2
  exit 1
fi
$PY -c "import edgec.runtime._edgec_c" || { echo "setup: the runtime extension did not build" >&2; exit 1; }
command -v cmake >/dev/null 2>&1 || $PY -m pip install -q cmake
echo "setup: building runtime_c with CMake into build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j 2 >/dev/null
echo "setup: done"
