#!/usr/bin/env bash
# Run every test: the C runtime's ctest suite (plain and under ASan/UBSan), then pytest on 2 workers.
# EDGEC_SLOW=1 also runs the exhaustive tests (by default CI runs a sample of them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh
export EDGEC_CACHE_DIR=${EDGEC_CACHE_DIR:-$PWD/build/kernel-cache}
# two pytest workers on two cores: numpy's OpenBLAS would start a spinning thread per core in each
# worker (measured under such load: a 64x64x3136 sgemm at 0.8 GFLOP/s, against 37 with one thread)
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

echo "== ctest (Release)"
ctest --test-dir build --output-on-failure
echo "== ctest (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEDGEC_SANITIZE=ON >/dev/null
cmake --build build-asan -j 2 >/dev/null
ctest --test-dir build-asan --output-on-failure
echo "== pytest"
$PY -m pytest -n 2 -q -rfE "$@"
