"""qmatmul (activation x activation, e.g. attention's q k^T and p v) on the packed vpmaddwd kernel
(quant_conv.matmul_isa: b - z_b packed as int16, the left zero point through column sums), on the
host target, x86_64-avx2 and the portable generic target: bit-exact with the numpy reference of
edgec/ops/quant.py. Batch axes (4-D, broadcast), sizes not multiples of the tiles, both
activation dtypes for b, zero points at the ends of the range, fused clamps, the MiniLM shapes."""
from __future__ import annotations

import numpy as np
import pytest

from edgec.quant.qmath import qrange, quantize_multiplier
from edgec.targets import load_target

from ..backend._harness import Case, build_for_target, check
from .test_quant_kernels import GENERIC

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(31)


def _case(id_, ash, bsh, bdt="uint8", za=None, zb=None, clamp=None, real=None):
    a = RNG.integers(0, 256, ash).astype(np.uint8)
    lo, hi = qrange(bdt)
    b = RNG.integers(lo, hi + 1, bsh).astype(bdt)
    k = ash[-1]
    m, s = quantize_multiplier(real if real is not None else 1.0 / (np.sqrt(k) * 180.0))   # output std ~30
    attrs = {"a_zero_point": int(RNG.integers(0, 256)) if za is None else za,
             "b_zero_point": int(RNG.integers(lo, hi + 1)) if zb is None else zb,
             "multiplier": (m,), "shift": (s,), "out_zero_point": 120, "qmin": clamp[0] if clamp else 0,
             "qmax": clamp[1] if clamp else 255, "out_dtype": "uint8"}
    return Case(id_, "qmatmul", attrs, [a, b])


CASES = [
    _case("qk_minilm", (1, 12, 128, 32), (1, 12, 32, 128), za=131, zb=125),
    _case("pv_minilm", (1, 12, 128, 128), (1, 12, 128, 32), za=126, zb=129),
    _case("odd_2x3", (2, 3, 17, 5), (2, 3, 5, 13)),
    _case("bcast", (2, 1, 20, 9), (3, 9, 7), bdt="int8"),
    _case("zp_ends_relu", (16, 6), (6, 24), za=255, zb=255, clamp=(120, 255), real=1e-3),
    _case("zp_ends_2", (1, 32, 40), (1, 40, 8), za=0, zb=255, real=1.5e-4),
    _case("few_rows_portable", (2, 5, 16), (2, 16, 8)),
    # the requantization forms: an exact power of two (multiplier 2^30: ties reachable, the |acc|
    # multiply-high)
    _case("ties_pow2", (1, 4, 40, 24), (1, 4, 24, 40), za=128, zb=128, real=2.0 ** -12),
]


@pytest.fixture(scope="module", params=["host", "x86_64-avx2", "generic"])
def runner(request, tmp_path_factory):
    target = GENERIC if request.param == "generic" else load_target(request.param)
    return build_for_target(CASES, tmp_path_factory, target, "qmatmul_" + request.param)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bit_exact(runner, case):
    check(case, runner.run(case))


def test_cases_are_not_trivial():
    for c in CASES:
        out = c.reference()[0]
        assert np.unique(out).size > 10, (c.id, np.unique(out).size)


def test_packed_kernel_chosen():
    from edgec.backend.kernels.registry import KERNELS, KernelSpec, TensorType
    from edgec.ir import ops as irops
    attrs = irops.get("qmatmul").normalize_attrs(dict(CASES[0].attrs))

    def script(target, m, dt="uint8"):
        spec = KernelSpec("qmatmul", attrs, (TensorType(dt, (2, m, 32)), TensorType("uint8", (2, 32, 64))),
                          (TensorType("uint8", (2, m, 64)),), target)
        return KERNELS["qmatmul"](spec).script()
    avx2 = load_target("x86_64-avx2")
    assert "pmadd.wd" in script(avx2, 16) and "pmadd.wd" in script(load_target("x86_64"), 16)
    assert "pmadd.wd" not in script(avx2, 8)                 # few rows: portable
    assert "pmadd.wd" not in script(avx2, 16, "int8")         # int8 activations (ARM): portable
    assert "pmadd.wd" not in script(GENERIC, 16)


def test_requant_forms():
    """MiniLM's qk^T: the signed multiply-high (vpmuldq), no 64-bit lanes (vpsraq, vpaddq); a power-of-two
    multiplier (a tie reachable): the |acc| form (no signed product); QMATMUL_I32 = False: the
    int64 lanes (vpsraq)."""
    from ..backend._harness import case_asm
    if load_target("host").name != "x86_64":
        pytest.skip("the AVX-512 target is not this host's")
    by = {c.id: c for c in CASES}
    a = case_asm(by["qk_minilm"], "x86_64")
    assert "vpmuldq" in a and "vpsraq" not in a and "vpaddq" not in a and "vpabsd" not in a
    t = case_asm(by["ties_pow2"], "x86_64")
    assert "vpmuldq" not in t and "vpmullq" not in t    # |acc| * 2^30: LLVM shifts instead of multiplying
    from edgec.backend.kernels import quant
    old = quant.QMATMUL_I32
    try:
        quant.QMATMUL_I32 = False
        assert "vpsraq" in case_asm(by["qk_minilm"], "x86_64")
    finally:
        quant.QMATMUL_I32 = old
