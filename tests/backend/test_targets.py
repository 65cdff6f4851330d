"""The compute-heavy kernels built for the other x86 schedule families (AVX2: 256-bit vectors
and 16 registers; generic: 128-bit SSE) and run on this machine, against the references."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgec.targets import host_cpu_flags, load_target

from ._harness import Case, build_cases, check, rand

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(23)


def _targets():
    avx2 = load_target("x86_64-avx2")
    generic = dataclasses.replace(avx2, name="x86_64-generic", vector_bits=128, schedule="generic",
                                  tvm={"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64"})
    return [avx2, generic]


CASES = [
    Case("conv", "conv", dict(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1),
         [rand(RNG, 1, 16, 20, 20), rand(RNG, 24, 16, 3, 3), rand(RNG, 24)], rtol=2e-5, atol=2e-5),
    Case("conv_s2_dw", "conv", dict(strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1), group=8),
         [rand(RNG, 1, 8, 17, 17), rand(RNG, 8, 1, 3, 3), None], rtol=1e-5, atol=1e-5),
    Case("max_pool", "max_pool", dict(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1)),
         [rand(RNG, 1, 4, 15, 15)]),
    Case("matmul", "matmul", {}, [rand(RNG, 19, 33), rand(RNG, 33, 27)], rtol=2e-5, atol=2e-5),
    Case("dense", "dense", {}, [rand(RNG, 3, 40), rand(RNG, 17, 40), rand(RNG, 17)], rtol=2e-5, atol=2e-5),
    Case("dense_gemm", "dense", {}, [rand(RNG, 40, 24), rand(RNG, 20, 24), None], rtol=2e-5, atol=2e-5),
    Case("softmax", "softmax", {"axis": 1}, [rand(RNG, 5, 48)]),
    Case("layer_norm", "layer_norm", {"axis": 1, "epsilon": 1e-5}, [rand(RNG, 4, 64), rand(RNG, 64), rand(RNG, 64)]),
]


@pytest.fixture(scope="module", params=_targets(), ids=lambda t: t.name)
def runner(request, tmp_path_factory):
    target = request.param
    if not {"avx2", "fma"} <= host_cpu_flags():
        pytest.skip("this machine cannot run AVX2 code")
    return build_cases(CASES, tmp_path_factory.mktemp(target.name), target=target)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_other_targets_match_reference(runner, case):
    check(case, runner.run(case))
