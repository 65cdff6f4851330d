"""Computations and schedules for the compute-heavy kernels: direct convolution, GEMM, GEMV.

Everything here works on ONNX layouts as they arrive (NCHW activations, OIHW weights,
row-major matrices): no weight pre-packing, so a kernel needs nothing but its arguments.

Direct convolution (``conv_direct``), used by conv, conv_transpose and the pools
    The input is first copied into a zero-padded "virtual input" (a TVM workspace buffer,
    rows padded to whole vectors; a width stride s gets one copy per phase, xp<r>[.., j] =
    x[.., j*s + r], so every tap reads a contiguous run). The accumulation is tiled in
    registers: ``mr`` output channels x ``nh`` output rows x ``nw`` vectors of ``L`` output
    columns; for every (input channel, tap) a tile step does ``nh*nw`` vector loads, ``mr``
    broadcast weight loads and ``mr*nh*nw`` FMAs. The tile is a stack buffer below TVM's
    1 KiB stack limit (never a workspace call) that LLVM keeps in registers; it is written to
    the output through the epilogue (bias, cast, average divisor). Tiles may overhang the
    output: overhanging channels read a clamped weight row, overhanging columns and rows read
    the padding, the write-back is then predicated. Tile, vector width and loop order
    (channel tiles outside or inside the spatial tiles) come from a cost model
    (``_choose_conv_tile``: FMA issue, L2 traffic of each tile's input window, memory
    streaming of input/weights beyond the cache, write-back, copy, and L1 set conflicts of
    the broadcast weight rows). 1-tap strided axes are subsampled instead of copied whole.
    Depthwise convolutions and pools copy each channel tile's input under the channel loop
    (a depthwise copy fills only its border, ``_border_fill_copy``); float depthwise
    convolutions, and 8-bit ones whose rows fill vectors (``_int8_depthwise_lanes``), use one
    channel and several rows per tile (``_depthwise_tile``). A row that fits one tile but not
    whole vectors is written back as one vector (``_vector_row_writeback``).
    Float32 dense convolutions with rows of 56 columns on AVX-512 targets take one row of 7 x 8
    lanes per tile (``_full_row_8lane``). Float kernels run in parallel from
    ``FLOAT_PARALLEL_MIN_MACS``, integer ones from ``PARALLEL_MIN_MACS``.

GEMM (``gemm_nn``), used by matmul and by dense with many rows
    ``C[m, n] = sum_k A[m, k] B[k, n]``: vectorized along n (contiguous in B and C), ``mr``
    rows of A broadcast per step, ``nw`` vectors of B; B is copied (padded, or transposed for
    dense's [n, k] weights) into a workspace buffer only when needed.

GEMM with tail columns (``gemm_tail_columns``), used by float 1x1 convolutions on 7x7 and 14x14
    (and by other small-image float convs over an im2col copy, ``nn._conv_im2col_tail``):
    ``C[m, n]`` with n = whole vectors + 1..4 columns (49 = 3 x 16 + 1, 196 = 12 x 16 + 4): the
    whole vectors in register tiles read straight from B (no padded copy, no idle lanes), the
    tail columns copied contiguous along k and computed as vector dot products with the tile's
    rows of A (still in L1), reduced across lanes. AVX-512 targets (32 vector registers), k of
    ``TAIL_GEMM_MIN_K`` or more.

GEMM with an overlapping last vector (``gemm_overlap_last``), used by the other float 1x1
    convolutions run as a GEMM whose pixels are not whole vectors (DS-CNN's 125): B is read in
    place, vector v covering the columns from min(v * L, n - L), so no padded copy of B is made.

Dense with few rows (``dense_nt``)
    ``y[m, n] = sum_k x[m, k] w[n, k]``: both operands are contiguous along k, so the
    register tile holds ``mr x nn`` vector partial sums over k that are reduced horizontally
    at the end. No copy of the weights. Float tiles keep their rows within the L1's ways
    (rows a multiple of 4 KiB apart share one set).

Workspace: the padded input copies of a convolution (per call, or per channel tile inside
the parallel loop for depthwise/pools) and the B copy of a GEMM. ``edgec.backend.build``
measures them from the lowered code.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import tvm
from tvm import te

tir = tvm.tirx

# TVM keeps constant-size local buffers below this many bytes on the stack; bigger ones go
# to TVMBackendAllocWorkspace (LowerTVMBuiltin, kMaxStackAlloca = 1024, exclusive).
STACK_LIMIT_BYTES = 1024
# below this many multiply-accumulates a kernel is not worth a parallel launch
PARALLEL_MIN_MACS = 1 << 18
# the same for float kernels: 2^19 MACs is 5-20 us of one core (dense fp32 at ~100 GFLOP/s,
# depthwise at ~25 GMAC/s). Session 8 measured 2^21
# (the value chosen on a VM whose second core was shared with other work) against 2^19 on an idle
# one, 2 threads, alternating: MobileNetV2 fp32 4.74-4.80 -> 4.17-4.67 ms (its 14x14 / 7x7
# depthwise layers of 0.4-1.4 M MACs ran on one core), PP-OCR 0.570-0.595 -> 0.500-0.509 ms,
# the text student 0.060-0.094 -> 0.059-0.061 ms, DS-CNN, the text MLP, resnet50 and MiniLM
# equal or faster
FLOAT_PARALLEL_MIN_MACS = 1 << 19


def parallel_min_macs(dtype: str) -> int:
    """Fewest MACs for which a kernel of this (input) dtype runs its loops in parallel."""
    return FLOAT_PARALLEL_MIN_MACS if str(dtype).startswith("float") else PARALLEL_MIN_MACS


# depthwise convolutions and pools with at most this many taps unroll all of them
MAX_UNROLLED_TAPS = 49
# PrimFunc attribute: build this kernel without TIR's common-subexpression elimination
NO_TIR_CSE_ATTR = "edgec.no_tir_cse"


# -- target facts ----------------------------------------------------------------------------------
def dtype_of(e) -> str:
    """dtype name of a PrimExpr or te.Tensor (0.27 expressions expose ``.ty``, loads ``.dtype``)."""
    if isinstance(e, te.Tensor):
        return str(e.dtype)
    return str(e.ty) if hasattr(e, "ty") else str(e.dtype)


def cast(e, dtype: str):
    return e if dtype_of(e) == dtype else e.astype(dtype)


def lowest_value(dtype: str):
    """The identity of max: -inf for floats, the minimum of an integer dtype."""
    if dtype.startswith("float"):
        return tir.const(float("-inf"), dtype)
    return tvm.tirx.min_value(dtype)


# max reduction whose identity is -inf for floats (te.max starts from the finite minimum, so a
# window that only covers -inf padding would give -FLT_MAX instead of -inf)
max_reduce = te.comm_reducer(lambda a, b: tir.max(a, b), lambda t: lowest_value(str(t)), name="max_inf")


def fast_exp(x):
    """exp of a float32 expression that vectorizes (LLVM lowers ``exp`` of a vector to one libm
    call per lane). Cephes ``expf``: round-to-nearest range reduction k = round(x / ln 2) with
    ln 2 split in two constants (Cody-Waite), a degree-5 polynomial on |r| <= ln2/2, and 2^k
    built in the exponent bits. Within 1 ulp of the correctly rounded exp for x in
    [-87.3, 88.7] (measured on 4M points); 0 below -87.34 (where expf gives a denormal,
    < 1.2e-38), inf above 88.72, NaN for NaN."""
    f32 = "float32"
    c = lambda v: tir.const(v, f32)  # noqa: E731
    xc = tir.max(tir.min(x, c(88.72283)), c(-87.33654))
    k = tir.floor(xc * c(1.44269504088896341) + c(0.5))
    r = xc - k * c(0.693359375) - k * c(-2.12194440e-4)
    p = c(1.9875691500e-4)
    for coef in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = p * r + c(coef)
    y = p * r * r + r + c(1.0)
    ki = k.astype("int32")
    # 2^k from the exponent bits; k = 128 (x within 0.35 of the overflow) as 2^127 * 2
    scale = tir.reinterpret(f32, tir.shift_left(tir.min(ki, 127) + 127, 23))
    out = y * scale * tir.Select(ki > 127, c(2.0), c(1.0))
    out = tir.Select(x < c(-87.33654), c(0.0), out)
    out = tir.Select(x > c(88.72283), c(float("inf")), out)
    return tir.Select(tir.isnan(x), x, out)   # NaN stays NaN


def _bits(dtype: str) -> int:
    return tvm.DataType(dtype).bits


def lane_options(target, dtype: str) -> list[tuple[int, float]]:
    """Vector widths (in elements of ``dtype``) a schedule may use, with the relative time of one
    vector instruction of that width (1.0 for the native width).

    AVX-512 targets may also use 256-bit vectors (for narrow images): on cores with two
    512-bit FMA units one costs as much as a 512-bit one, on Zen 4 half as much; 0.75 splits it.
    """
    vbits = int(getattr(target, "vector_bits", 128) or 128)
    lanes = max(1, vbits // max(8, _bits(dtype)))
    opts = [(lanes, 1.0)]
    if vbits >= 512 and lanes >= 4:
        opts.append((lanes // 2, 0.75))
    return opts


def vector_registers(target) -> int:
    fam = str(getattr(target, "schedule", "generic"))
    return 32 if fam == "x86_avx512" else 16


def max_accumulators(target, dtype: str, lanes: int) -> int:
    """How many accumulator vectors a register tile may use."""
    by_regs = vector_registers(target) - 4
    by_stack = (STACK_LIMIT_BYTES - 4) // (lanes * _bits(dtype) // 8)
    return max(1, min(by_regs, by_stack, 24))


def acc_dtype(dtype: str) -> str:
    """Accumulator dtype: float16 accumulates in float32."""
    return "float32" if dtype == "float16" else dtype


def conv_acc_dtype(dtype: str) -> str:
    """Accumulator of a direct convolution (sum of products): 8-bit integers (qconv's uint8/int8
    loads) accumulate in int32, the rest as ``acc_dtype``."""
    return "int32" if dtype in ("int8", "uint8") else acc_dtype(dtype)


def _ceil_to(v: int, m: int) -> int:
    return -(-v // m) * m


def _try(fn, *args):
    """Apply an optional schedule step; some steps are refused for shapes that do not need them."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001  (tvm raises ScheduleError / TVMError subclasses)
        return None


def _extent(sch, loop) -> int | None:
    """Constant extent of a loop (None when it depends on an outer loop)."""
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tvm.tirx.IntImm) else None


def vectorize_copy(sch, block, lanes: int, n_fixed: int = 0, parallel_min: int = 1 << 15) -> None:
    """Schedule a spatial copy/fill block: vectorize the innermost run of elements (the largest
    multiple of a vector width when none divides it; the rest stays scalar) and, unless the
    block sits under ``n_fixed`` outer loops already scheduled, parallelize its leading loops
    when big. The loop nest is kept: fused loops would recompute every index with divisions,
    and a vector crossing a row of odd length would become a scatter."""
    loops = sch.get_loops(block)[n_fixed:]
    if not loops:
        return
    exts = [_extent(sch, lp) for lp in loops]
    if any(e is None for e in exts):
        return
    inner, ext = loops[-1], exts[-1]
    outer_loops = list(loops[:-1])
    big = n_fixed == 0 and math.prod(exts) >= parallel_min
    if outer_loops and big:
        lead = outer_loops[:2]          # batch and channel for images
        sch.parallel(sch.fuse(*lead) if len(lead) > 1 else lead[0])
    widths = [v for v in (lanes, lanes // 2, lanes // 4) if v >= 2]
    vec = next((v for v in widths if ext % v == 0), 0)
    if vec:
        if ext == vec:
            sch.vectorize(inner)
        else:
            o, i = sch.split(inner, [None, vec])
            sch.vectorize(i)
            if not outer_loops and big:
                sch.parallel(o)
        return
    vec = next((v for v in widths if ext > v), 0)
    if vec and outer_loops:
        main_loop, _tail = sch.loop_partition(inner, [ext - ext % vec, None])
        if ext - ext % vec == vec:
            sch.vectorize(main_loop)
        else:
            _, i = sch.split(main_loop, [None, vec])
            sch.vectorize(i)


def scheduled(spec, ins: Sequence[te.Tensor], outs: Sequence[te.Tensor], schedule: Callable):
    """``common.prim_func`` with a custom schedule. Should a schedule step be refused for some
    unusual shape, the kernel is built from the plain loops instead (correct, slow) with a
    warning naming the op; ``EDGEC_STRICT_SCHEDULES=1`` (set by the backend tests) raises."""
    from .common import prim_func
    try:
        return prim_func(spec, ins, outs, schedule)
    except Exception as e:  # noqa: BLE001  (any TVM schedule error)
        if os.environ.get("EDGEC_STRICT_SCHEDULES", "") not in ("", "0"):
            raise
        warnings.warn(f"edgec: the {spec.op} schedule failed for inputs "
                      f"{[None if t is None else list(t.shape) for t in spec.inputs]} "
                      f"({type(e).__name__}); using unscheduled loops", RuntimeWarning, stacklevel=2)
        return te.create_prim_func(list(ins) + list(outs))


# -- direct convolution ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvProblem:
    """A convolution over a *virtual input* V (already padded / zero-inserted):

        out[n, oc, o] = sum_{ic < icg, t < kernel} V[n, chan(oc, ic), o*stride + t*dilation] * W(oc, ic, t)

    with chan(oc, ic) = (oc // ocg) * icg + ic. ``vfun(n, c, v)`` returns V (0 outside the
    input), ``wfun(oc, ic, t)`` the weight, ``direct(n, c, v)`` V without bounds checks
    when V is the input itself (no padding), else None.
    """
    n: int
    c: int
    oc: int
    groups: int
    out: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    in_shape: tuple[int, ...]          # spatial extent of V that is backed by real input (for `direct`)
    vfun: Callable
    wfun: Callable | None              # None: no weights (pooling)
    direct: Callable | None
    dtype: str
    reducer: str = "sum"               # "sum" (of products, or of values without weights) or "max"
    pad_begin: tuple[int, ...] | None = None   # leading padding of V per spatial axis, when known

    @property
    def icg(self) -> int:
        return self.c // self.groups

    @property
    def ocg(self) -> int:
        return self.oc // self.groups

    @property
    def macs(self) -> int:
        return self.n * self.oc * math.prod(self.out) * self.icg * math.prod(self.kernel)


@dataclass(frozen=True)
class ConvTile:
    lanes: int
    nw: int          # vectors along the output width per tile
    nh: int          # output rows per tile (1 for 1-D convolutions)
    mr: int          # output channels per tile
    direct: bool     # read the input itself, no padded copy
    oc_inner: bool = False   # loop order: spatial tiles outside, output-channel tiles inside


TILE_OVERRIDE: dict = {}   # for experiments: {"conv": ConvTile(...)} forces a tile
# float direct convolutions whose row fits one tile but not whole vectors write it back vectorized
# (False, for experiments: the scalar write-back of before)
VECTOR_ROW_WRITEBACK = True
# float32 dense convolutions with rows of 56 columns use one 7 x 8-lane row per tile on AVX-512
# targets (``_full_row_8lane``; False: the cost model's tile)
FULL_ROW_8LANE_TILE = True
# a depthwise/pool channel's padded copy fills only its border (False: ``decompose_padding``'s fill
# of the whole buffer, for experiments)
BORDER_ONLY_FILL = True

# a float depthwise tile's per-channel copy of one phase of a width stride > 1 is vectorized when
# its rows are more than half a vector and at most one (conv_direct; False: LLVM's scalar loop)
STRIDED_COPY_ONE_VECTOR = True
# a float depthwise tile's per-phase copies (width stride > 1) whose rows are longer than a vector
# get their padding written only where it lies (rows above / below, columns left / right of the
# phase's interior), not as a fill of the whole copy first (False: decompose_padding): on Zen 4,
# alternating runs, MobileNetV2's 96-channel 112 -> 56 330-420 -> 280 us, 144-channel 56 -> 28
# 100-119 -> 71-73 us; rows of one vector lost (32x32 -> 16 went 8 -> 31 us with it), rows of 7
# too (22.5 -> 28.4 us)
STRIDED_BORDER_FILL = True
# associativity of the L1 data cache (32 KiB 8-way on Zen 4 and recent Intel cores)
L1_WAYS = 8
# bytes of cache a kernel may count on keeping (half of a 1 MiB L2)
CACHE_BYTES = 512 * 1024
# cycles per byte streamed from beyond the cache (about 40 GB/s at 2.6 GHz)
MEM_CYCLES_PER_BYTE = 1.0 / 16


def _choose_conv_tile(p: ConvProblem, target, allow_oc_inner: bool = True, oc_exact: bool = False) -> ConvTile:
    """The register tile and loop order of least estimated cycles.

    The estimate adds: FMA issue (tile steps x max(accumulators, loads/2), native-width
    instructions cost 1, half-width ones ``lane_options``' factor); pulling each tile's input
    window from L2 (one cycle a vector); streaming input or weights from memory once per
    outer-loop pass when they do not fit in ``CACHE_BYTES``; the write-back (vector when the
    tile divides the output, scalar and predicated otherwise); the padded input copy.
    """
    if "conv" in TILE_OVERRIDE:
        return TILE_OVERRIDE["conv"]
    if FULL_ROW_8LANE_TILE and _full_row_8lane(p, target):
        return ConvTile(8, p.out[-1] // 8, 1, 2, False, True)
    if p.icg == 1 and p.ocg == 1 and p.wfun is not None and len(p.out) == 2 and (
            p.dtype in ("float32", "float16") or _int8_depthwise_lanes(p, target) is not None):
        return _depthwise_tile(p, target)
    r = len(p.out)
    ow = p.out[-1]
    oh = p.out[-2] if r >= 2 else 1
    outer = math.prod(p.out[:-2]) if r >= 3 else 1
    kh = p.kernel[-2] if r >= 2 else 1
    sh = p.strides[-2] if r >= 2 else 1
    dh = p.dilations[-2] if r >= 2 else 1
    kw, sw, dw = p.kernel[-1], p.strides[-1], p.dilations[-1]
    kouter = math.prod(p.kernel[:-2]) if r >= 3 else 1
    steps = p.icg * math.prod(p.kernel)
    useful = p.oc * oh * ow
    esize = _bits(p.dtype) // 8
    w_bytes = p.oc * steps * esize
    best, best_cost = None, None
    # 8-bit integer products are loaded narrow but accumulated in int32 lanes (a max stays 8-bit)
    narrow = p.dtype in ("int8", "uint8") and p.reducer != "max"
    for lanes, leff in lane_options(target, conv_acc_dtype(p.dtype) if narrow else p.dtype):
        amax = max_accumulators(target, conv_acc_dtype(p.dtype) if narrow else acc_dtype(p.dtype), lanes)
        for nw in range(1, 5):
            wt = nw * lanes
            if nw > 1 and (nw - 1) * lanes >= ow:
                break
            owp = _ceil_to(ow, wt)
            phases = min(sw, kw)
            cols_in = phases * -(-(wt + ((kw - 1) * dw) // sw) // lanes)
            for nh in range(1, min(oh, 8) + 1):
                ohp = _ceil_to(oh, nh)
                rows_in = (nh - 1) * sh + (kh - 1) * dh + 1
                in_bytes = p.c * ((ohp - 1) * sh + (kh - 1) * dh + 1) * (owp * sw + (kw - 1) * dw) * esize
                for mr in range(1, 17):
                    a = mr * nh * nw
                    if a > amax or mr > p.oc:
                        break
                    if mr > 4 and _rows_per_cache_set(steps * esize, mr) > 4:
                        break   # the broadcast weight rows would evict each other from L1
                    if oc_exact and p.oc % mr:
                        continue
                    ocp = _ceil_to(p.oc, mr)
                    oc_tiles = ocp // mr
                    sp_tiles = (ohp // nh) * (owp // wt)
                    tiles = oc_tiles * sp_tiles
                    # input vectors are shared by the tile's channels of one group only
                    g_t = 1 if p.groups == 1 or p.ocg % mr == 0 else min(mr, -(-mr // p.ocg) + 1)
                    step = max(a, (g_t * nh * nw + mr) / 2.0) + 1.0
                    fma = tiles * steps * step * leff
                    l2 = tiles * g_t * p.icg * kouter * rows_in * cols_in
                    exact = owp == ow and ohp == oh and ocp == p.oc
                    wb = useful * (2.0 / lanes if exact else 1.5)
                    direct = exact and p.direct is not None and _direct_fits(p, owp, ohp)
                    copy = 0.0 if direct else in_bytes / esize * 0.5 * phases / sw
                    for oc_inner in ((False, True) if allow_oc_inner else (False,)):
                        if oc_inner:
                            mem = in_bytes + (w_bytes if w_bytes <= CACHE_BYTES else w_bytes * (ohp // nh))
                        else:
                            mem = w_bytes + (in_bytes if in_bytes <= CACHE_BYTES else in_bytes * oc_tiles)
                        cost = outer * (fma + l2 + wb + tiles * a + copy + mem * MEM_CYCLES_PER_BYTE)
                        if best_cost is None or cost < best_cost - 1e-9:
                            best, best_cost = ConvTile(lanes, nw, nh, mr, direct, oc_inner), cost
    return best


def _full_row_8lane(p: ConvProblem, target) -> bool:
    """A float32 dense 2-D convolution with a kernel wider than 1, width stride 1 and rows of 56
    columns (resnet50's 56x56 3x3 layers) on an AVX-512 target: one tile covers a whole row in 7
    vectors of 8 lanes, 2 output channels (14 accumulators). The cost model, which prices a
    256-bit FMA at 0.75 of a 512-bit one, picked 16-lane tiles padding the row to 64 columns and
    13 channels (one vector, 14 loads per 13 FMAs): 97.5 GFLOP/s against 109 (Zen 4, one thread,
    64 -> 64 channels; 2 channels ran 109, 3 channels 107.5, 4 channels 83)."""
    if p.dtype != "float32" or p.groups != 1 or p.reducer != "sum" or p.wfun is None or len(p.out) != 2:
        return False
    if 8 not in [ls for ls, _ in lane_options(target, p.dtype)] or vector_registers(target) < 32:
        return False
    return p.out[-1] == 56 and p.kernel[-1] > 1 and p.strides[-1] == 1 and p.oc % 2 == 0


def _vector_row_writeback(p: ConvProblem) -> bool:
    """Whether a direct convolution whose rows each fit one register tile, but not whole vectors,
    writes a row back as one vector (``VECTOR_ROW_WRITEBACK``). Measured on Zen 4, one thread:
    - float, 6 columns or more: MobileNetV2's depthwise 14x14 91 -> 31 us, 7x7 71 -> 32 us,
      28 -> 14 stride 2 64 -> 32 us;
    - float, fewer columns, not depthwise: DS-CNN's first conv (5 columns) 12.3 -> 10.7 us;
      depthwise 5 columns: 5.7 -> 6.5 us in the model, so not there;
    - integer outputs (qconv's int64 requantization) of 6-8 columns: 7x7 47 -> 38 us; 14
      columns in 16 lanes 43 -> 49 us and 5 columns 6.7 -> 8.0 us, so not there."""
    ow = p.out[-1]
    depthwise = p.icg == 1 and p.ocg == 1
    if p.dtype.startswith("float"):
        return ow >= 6 or not depthwise
    return 6 <= ow <= 8


def _int8_depthwise_lanes(p: ConvProblem, target) -> int | None:
    """The int32 vector width of qconv's depthwise (uint8/int8 loads, int32 accumulators) on
    ``_depthwise_tile``, or None to keep the general tile. Measured on Zen 4 (MobileNetV2, one
    thread), the tile pays when its vectors cover a row without a partial last vector:
    - width stride 1 and a vector width that divides the row (the widest such): 112 columns
      204 -> 190 us, 56 columns 245 -> 218 us;
    - width stride 1 and a row of 9-16 columns in one vector at least 3/4 used: 14x14, 384
      channels 56 -> 43 us;
    - any stride and a row of 6-8 columns in one 8-lane vector, with the row's write-back
      vectorized (``VECTOR_ROW_WRITEBACK``): 576 channels 14x14 stride 2 75 -> 31 us, 7x7
      47 -> 40 us.
    Elsewhere it lost: 28 columns on two 16-lane vectors took 2.2x as long as the general tile
    (the last vector's lanes are written back one by one, each with qconv's int64
    requantization), 56 columns at stride 2 1.07x."""
    if p.dtype not in ("int8", "uint8") or p.reducer != "sum":
        return None
    ow = p.out[-1]
    opts = [ls for ls, _ in lane_options(target, conv_acc_dtype(p.dtype))]
    if 6 <= ow <= 8 and 8 in opts:
        return 8
    if p.strides[-1] != 1:
        return None
    exact = [ls for ls in opts if ow % ls == 0 and ls >= 4]
    if exact:
        return max(exact)
    one = [ls for ls in opts if 8 < ow <= ls and 4 * ow >= 3 * ls]
    return min(one) if one else None


def _depthwise_tile(p: ConvProblem, target) -> ConvTile:
    """Depthwise 2-D convolution (float, or 8-bit loads into int32 accumulators where
    ``_int8_depthwise_lanes`` allows): one channel per tile, ``nh`` output rows of one vector
    each. The channel's kh*kw weights stay in registers and, with the taps unrolled, each input
    row vector is loaded once for the rows of the tile that read it; several channels per tile
    (what the general cost model picks, as for a dense convolution) need a broadcast weight load
    per FMA and ran 1.5-2.5x slower (MobileNetV2's depthwise layers, Zen 4)."""
    oh, ow = p.out
    opts = [ls for ls, _ in lane_options(target, conv_acc_dtype(p.dtype))]

    def used(ls):
        return ow / (_ceil_to(ow, ls))
    lanes = max(opts, key=lambda ls: (round(used(ls), 3), ls))
    if p.dtype in ("int8", "uint8"):
        lanes = _int8_depthwise_lanes(p, target)
    nh = next((d for d in (8, 7, 6, 5, 4) if oh % d == 0), min(oh, 4))
    return ConvTile(lanes, 1, max(1, min(nh, oh)), 1, False, False)


def _rows_per_cache_set(stride_bytes: int, rows: int, line: int = 64, sets: int = 64) -> int:
    """Most of ``rows`` rows ``stride_bytes`` apart that fall in one set of an L1 cache with
    ``sets`` sets of ``line``-byte lines (32 KiB 8-way: 64 sets). Rows at a multiple of 4 KiB
    all share one set, and a register tile broadcasting from more rows than the cache has
    ways misses on every step."""
    counts: dict[int, int] = {}
    for i in range(rows):
        s = (i * stride_bytes // line) % sets
        counts[s] = counts.get(s, 0) + 1
    return max(counts.values())


def _direct_fits(p: ConvProblem, owp: int, ohp: int) -> bool:
    """Reading the input directly is possible when stride 1 along the width and every tap of
    every (padded) tile lies inside the input."""
    r = len(p.out)
    if p.strides[-1] != 1:
        return False
    padded = list(p.out)
    padded[-1] = owp
    if r >= 2:
        padded[-2] = ohp
    for i in range(r):
        span = (padded[i] - 1) * p.strides[i] + (p.kernel[i] - 1) * p.dilations[i] + 1
        if span > p.in_shape[i]:
            return False
    return True


def _subsample_pointwise(p: ConvProblem) -> ConvProblem:
    """Axes with a 1-tap kernel and stride s read every s-th input element only: fold the stride
    into the virtual input, so the padded copy holds just the elements that are read."""
    r = len(p.out)
    sub = [p.strides[i] if p.kernel[i] == 1 else 1 for i in range(r)]
    if all(s == 1 for s in sub):
        return p

    def scale(v):
        return [v[i] * sub[i] if sub[i] > 1 else v[i] for i in range(r)]
    vfun, direct = p.vfun, p.direct
    return ConvProblem(
        n=p.n, c=p.c, oc=p.oc, groups=p.groups, out=p.out, kernel=p.kernel,
        strides=tuple(p.strides[i] // sub[i] for i in range(r)), dilations=p.dilations,
        in_shape=tuple(-(-p.in_shape[i] // sub[i]) for i in range(r)),
        vfun=lambda n, c, v: vfun(n, c, scale(v)), wfun=p.wfun,
        direct=None if direct is None else (lambda n, c, v: direct(n, c, scale(v))), dtype=p.dtype,
        reducer=p.reducer)


def conv_direct(p: ConvProblem, target, epilogue: Callable, out_dtype: str,
                out_name: str = "out") -> tuple[te.Tensor, Callable]:
    """The output tensor of a direct convolution and the schedule for its PrimFunc.

    ``epilogue(acc_value, n, oc, o)`` maps the accumulated value at output (n, oc, o) to the
    output value (bias, cast). Returns ``(out, schedule)``; ``schedule(sch, spec)`` takes the
    ``tvm.s_tir.Schedule`` of the PrimFunc built over the kernel's placeholders and ``out``.
    """
    p = _subsample_pointwise(p)
    # one input channel per output channel (depthwise, pooling): channels are independent
    per_tile_copy = p.icg == 1 and p.ocg == 1
    tile = _choose_conv_tile(p, target, allow_oc_inner=not per_tile_copy, oc_exact=per_tile_copy)
    per_tile_copy = per_tile_copy and not tile.direct
    r = len(p.out)
    is_max = p.reducer == "max"
    ad = p.dtype if is_max else conv_acc_dtype(p.dtype)
    L, nw, nh, mr = tile.lanes, tile.nw, tile.nh, tile.mr
    outp = list(p.out)
    outp[-1] = _ceil_to(p.out[-1], nw * L)
    if r >= 2:
        outp[-2] = _ceil_to(p.out[-2], nh)
    ocp = _ceil_to(p.oc, mr)
    sw = p.strides[-1]
    icg, ocg = p.icg, p.ocg

    xps: list = []
    xp_phases: list = []     # the width phase each copy in xps holds (0 without a width stride)
    if tile.direct:
        def read(n, c, v_outer, ph_off, j):
            return p.direct(n, c, list(v_outer) + [j])
    else:
        vext = [(outp[i] - 1) * p.strides[i] + (p.kernel[i] - 1) * p.dilations[i] + 1 for i in range(r - 1)]
        # rows padded to whole vectors: the copies and the zero fill vectorize along them
        jext = _ceil_to(outp[-1] + ((p.kernel[-1] - 1) * p.dilations[-1]) // sw, L)
        if sw == 1:
            xp = te.compute((p.n, p.c, *vext, jext), lambda n, c, *v: p.vfun(n, c, list(v)), name="xp")
            xps, xp_phases = [xp], [0]

            def read(n, c, v_outer, phase, j):
                return xp[(n, c, *v_outer, j)]
        else:
            # one padded copy per phase of the width stride: xp<r>[..., j] = V[..., j*sw + r],
            # so that a tap reads a contiguous run; only the phases some tap reads are built
            def phase_copy(ph):
                return te.compute((p.n, p.c, *vext, jext),
                                  lambda n, c, *v: p.vfun(n, c, list(v[:-1]) + [v[-1] * sw + ph]), name=f"xp{ph}")
            phases = sorted({(t * p.dilations[-1]) % sw for t in range(p.kernel[-1])})
            xps, xp_phases = [phase_copy(ph) for ph in phases], phases

            def read(n, c, v_outer, phase, j):
                idx = (n, c, *v_outer, j)
                val = xps[-1][idx]
                for ph, t in zip(phases[-2::-1], xps[-2::-1]):
                    val = tir.Select(phase == ph, t[idx], val)
                return val

    ric = te.reduce_axis((0, icg), name="ric")
    kw, dw = p.kernel[-1], p.dilations[-1]
    # stride > 1 along the width: tap t reads the copy of phase (t*dw) % sw at offset
    # (t*dw) // sw; the width-tap loop is unrolled, so each tap's choice of copy is a constant
    # and the accumulation stays one FMA per tap
    unroll_w = len(xps) > 1
    rk = [te.reduce_axis((0, p.kernel[i]), name=f"rk{i}") for i in range(r)]

    def term(val, occ, taps):
        if p.wfun is None:
            return cast(val, ad)
        return cast(val, ad) * cast(p.wfun(occ, ric, taps), ad)

    def reduce(body, axes):
        return max_reduce(body, axis=axes) if is_max else te.sum(body, axis=axes)

    def acc_f(n, oc, *o):
        occ = tir.min(oc, p.oc - 1) if ocp != p.oc else oc
        c = ric if p.groups == 1 else (occ // ocg) * icg + ric
        v_outer = [o[i] * p.strides[i] + rk[i] * p.dilations[i] for i in range(r - 1)]
        toff = rk[-1] * dw
        if sw > 1 and not tile.direct:
            val = read(n, c, v_outer, toff % sw, o[-1] + toff // sw)
        else:
            val = read(n, c, v_outer, 0, o[-1] * sw + toff)
        return reduce(term(val, occ, list(rk)), [ric] + rk)

    acc = te.compute((p.n, ocp, *outp), acc_f, name="acc")
    out = te.compute((p.n, p.oc, *p.out), lambda n, oc, *o: epilogue(acc[(n, oc, *o)], n, oc, list(o)),
                     name=out_name)

    def schedule(sch, spec) -> None:
        b_acc = sch.get_sblock("acc")
        b_out = sch.get_sblock(out_name)
        loops = sch.get_loops(b_acc)
        n_l, oc_l = loops[0], loops[1]
        o_l = loops[2:2 + r]
        red = loops[2 + r:]
        oco, oci = sch.split(oc_l, [None, mr])
        wo, wr, wv = sch.split(o_l[-1], [None, nw, L])
        if r >= 2:
            ho, hi = sch.split(o_l[-2], [None, nh])
            sp_outer = list(o_l[:-2]) + [ho, wo]
            inner = [oci, hi, wr, wv]
        else:
            sp_outer = [wo]
            inner = [oci, wr, wv]
        outer = [n_l] + (sp_outer + [oco] if tile.oc_inner else [oco] + sp_outer)
        sch.reorder(*outer, *red, *inner)
        sch.reverse_compute_at(b_out, outer[-1])
        for lp in inner[:-1]:
            sch.unroll(lp)
        if p.icg == 1 and math.prod(p.kernel) <= MAX_UNROLLED_TAPS:
            # one input channel per output channel (depthwise, pooling): unroll all taps so that
            # LLVM loads each input vector once for the taps of neighbouring rows that share it
            for lp in red[1:]:
                sch.unroll(lp)
        elif unroll_w:
            sch.unroll(red[-1])
        sch.vectorize(wv)
        exact = tuple(outp) == tuple(p.out) and ocp == p.oc
        if exact:
            ol = sch.get_loops(b_out)
            if (_extent(sch, ol[-1]) or 1) % L == 0:
                o2, v2 = sch.split(ol[-1], [None, L])
                sch.unroll(o2)
                sch.vectorize(v2)
        elif VECTOR_ROW_WRITEBACK and nw * L >= p.out[-1] > 1 and _vector_row_writeback(p):
            # one tile covers a whole row that is not a multiple of the vector width (14 or 7
            # columns in 16/8 lanes): the write-back loop under the tile has the row's extent;
            # vectorized, LLVM stores it as 8 + 4 + 2 lanes where the scalar loop took a store
            # per element (see _vector_row_writeback)
            ol = sch.get_loops(b_out)
            if _extent(sch, ol[-1]) == p.out[-1]:
                sch.vectorize(ol[-1])
        if per_tile_copy:
            # channels are independent: copy only this tile's channels, under the (n, oc) loop,
            # so the padded copy stays in cache instead of streaming the whole input twice
            chan = sch.fuse(n_l, oco)
            if p.macs >= parallel_min_macs(p.dtype):
                sch.parallel(chan)
            for t in xps:
                sch.compute_at(sch.get_sblock(t.op.name), chan)
        else:
            # the outer loops fused whether or not they run in parallel: LLVM keeps the tile in
            # registers in this form (DS-CNN's first conv: 20 us with the loops apart, 11 us fused)
            fused = sch.fuse(*outer)
            if p.macs >= parallel_min_macs(p.dtype):
                sch.parallel(fused)
        n_fixed = 1 if per_tile_copy else 0
        native = lane_options(target, p.dtype)[0][0]

        def _one_vector(blk) -> bool:
            # the strided copy of a float depthwise tile whose rows are one vector
            return (STRIDED_COPY_ONE_VECTOR and n_fixed == 1 and sw > 1 and p.dtype.startswith("float")
                    and native // 2 < (_extent(sch, sch.get_loops(blk)[-1]) or 0) <= native)
        for t, phase in zip(xps, xp_phases):
            blk = sch.get_sblock(t.op.name)
            loops_b = sch.get_loops(blk)
            if BORDER_ONLY_FILL and per_tile_copy and r == 2 and p.pad_begin is not None:
                if sw == 1 and _border_fill_copy(sch, blk, p, L):
                    continue
                if (sw > 1 and STRIDED_BORDER_FILL and p.dtype.startswith("float")
                        and p.in_shape[-1] // sw > native
                        and _border_fill_copy(sch, blk, p, L, phase=phase, vec_mid=False)):
                    continue
            pad_block = _try(sch.decompose_padding, blk, loops_b[n_fixed]) if len(loops_b) > n_fixed else None
            if pad_block is not None:
                vectorize_copy(sch, pad_block, L, n_fixed)
            if sw == 1:
                vectorize_copy(sch, blk, L, n_fixed)
            elif _one_vector(blk):
                # a channel's stride-sw gather whose rows are one vector (more than half of
                # it): TVM's vector gather (one insert per lane) beat LLVM's scalar loop, on
                # Zen 4: MobileNetV2's 192-channel 28 -> 14 depthwise 91 -> 41 us, 32x32 -> 16
                # 29 -> 8 us; rows of 7 (22.7 -> 30.8 us) or 28 and more lost
                sch.vectorize(sch.get_loops(blk)[-1])
            elif n_fixed == 0 and (_extent(sch, loops_b[0]) or 1) * (_extent(sch, loops_b[1]) or 1) > 1:
                # a stride-sw gather: TVM would emit one scalar load per lane; the plain loop is
                # vectorized by LLVM with wide loads and shuffles
                sch.parallel(sch.fuse(*sch.get_loops(blk)[:2]))
        sch.decompose_reduction(b_acc, red[0] if red else wv)

    return out, schedule


def _border_fill_copy(sch, blk, p: ConvProblem, lanes: int, phase: int = 0, vec_mid: bool = True) -> bool:
    """Schedule a channel's padded copy xp[row, col] (under the channel loop; with a width stride
    sw > 1 the copy of one ``phase``: col j holds input column j*sw + phase) as its parts: the
    rows above and below the input and the columns left and right of it get the padding value,
    the interior is a vectorized copy (a strided one only if ``vec_mid``). ``decompose_padding`` fills the
    whole buffer first and then copies the interior over it, one write pass more: MobileNetV2's
    144-channel 56x56 depthwise spent about a quarter of its time in that fill. False (nothing
    done) when the loops are not the expected two."""
    loops = sch.get_loops(blk)
    exts = [_extent(sch, lp) for lp in loops]
    if len(loops) < 2 or any(e is None for e in exts[-2:]) or any(e != 1 for e in exts[1:-2]):
        return False
    rows, cols = exts[-2], exts[-1]
    pt, pl = p.pad_begin
    h, w = p.in_shape
    if w < (8 if p.dtype.startswith("float") else 6):
        # fp32 rows of 7 copied as one 7-lane vector ran 48 -> 66 us (960 channels 7x7), int8
        # ones 47 -> 37 us
        return False

    def parts(begin, size, ext):
        mid = max(0, min(size, ext - begin))
        sizes = [begin, mid, ext - begin - mid]
        return [v for v in sizes if v > 0], (1 if begin > 0 else 0) if mid > 0 else None

    row_sizes, row_mid = parts(pt, h, rows)
    sw = p.strides[-1]
    if sw == 1:
        col_sizes, col_mid = parts(pl, w, cols)
    else:
        # the copy of one phase of the width stride: column j holds input column j*sw + phase - pl
        first = max(0, -(-(pl - phase) // sw))
        end = max(first, -(-(w + pl - phase) // sw))
        col_sizes, col_mid = parts(first, end - first, cols)
    if row_mid is None or col_mid is None:
        return False
    row_loops = sch.loop_partition(loops[-2], row_sizes[:-1] + [None]) if len(row_sizes) > 1 else [loops[-2]]
    for i, rl in enumerate(row_loops):
        cl = sch.get_loops(sch.get_child_blocks(rl)[0])[-1]
        col_loops = [cl]
        if i == row_mid and len(col_sizes) > 1:
            col_loops = sch.loop_partition(cl, col_sizes[:-1] + [None])
        for j, lp in enumerate(col_loops):
            # one vector of the part's length (a partitioned loop cannot be split: it does not
            # start at 0); LLVM cuts it into native vectors. A strided copy's interior is left
            # to LLVM's loop vectorizer (wide loads and permutes) unless ``vec_mid``
            if i == row_mid and j == col_mid and sw > 1 and not vec_mid:
                continue
            if (_extent(sch, lp) or 1) > 1:
                sch.vectorize(lp)
    return True


# -- GEMM (B contiguous along n) -------------------------------------------------------------------
# ``gemm_tail_columns`` needs this deep a reduction: its tail (copy, dot products, reduction across
# lanes) costs about the same per tile whatever k; 96 -> 576 channels at 14x14 ran 207 us padded,
# 219 us with the tail
TAIL_GEMM_MIN_K = 128

@dataclass(frozen=True)
class GemmTile:
    lanes: int
    nw: int
    mr: int
    pad_b: bool


def _choose_gemm_tile(m: int, n: int, k: int, dtype: str, target, b_transposed: bool = False) -> GemmTile:
    if "gemm" in TILE_OVERRIDE:
        return TILE_OVERRIDE["gemm"]
    best, best_cost = None, None
    for lanes, leff in lane_options(target, dtype):
        amax = max_accumulators(target, acc_dtype(dtype), lanes)
        for nw in range(1, 7):
            wt = nw * lanes
            if nw > 1 and (nw - 1) * lanes >= n:
                break
            np_ = _ceil_to(n, wt)
            for mr in range(1, 17):
                a = mr * nw
                if a > amax or mr > m:
                    break
                mp = _ceil_to(m, mr)
                tiles = (mp // mr) * (np_ // wt)
                step = max(a, (nw + mr) / 2.0) + 1.0
                fma = tiles * k * step * leff
                exact = np_ == n and mp == m
                wb = m * n * (2.0 / lanes if exact else 1.5)
                copy = k * np_ * 1.5 if b_transposed else 0.0 if np_ == n else k * np_ * 0.75
                cost = fma + wb + copy + tiles * a
                if best_cost is None or cost < best_cost - 1e-9:
                    best, best_cost = GemmTile(lanes, nw, mr, b_transposed or np_ != n), cost
    return best


# gemm_nn over an output larger than this (bytes) sweeps pixel columns in chunks whose B panel
# is about GEMM_CHUNK_B_BYTES, all output-channel tiles of a chunk before the next chunk, so that
# every output (and residual) row is written (read) in runs of a chunk's width, which the hardware
# prefetchers follow; the unchunked order (all channels per vector column) touched each row one
# cache line at a time: resnet50's 64 -> 256 1x1 at 56x56 with a fused residual, cold caches,
# read its residual at demand-miss latency (0 / None: no chunks)
GEMM_CHUNK_MIN_OUT_BYTES = 1 << 20
GEMM_CHUNK_B_BYTES = 128 * 1024


def _gemm_column_chunk(mp: int, np_: int, k: int, wt: int, dtype: str) -> int:
    """Tile columns (of ``wt`` pixels) per chunk for ``gemm_nn``, 0 for no chunking."""
    if dtype not in ("float32", "float16") or not GEMM_CHUNK_MIN_OUT_BYTES \
            or mp * np_ * (_bits(dtype) // 8) < GEMM_CHUNK_MIN_OUT_BYTES:
        return 0
    cb = max(1, GEMM_CHUNK_B_BYTES // (k * wt * (_bits(dtype) // 8)))
    blocks = np_ // wt
    if cb >= blocks:
        return 0
    while blocks % cb:       # whole chunks (no ragged last chunk)
        cb -= 1
    return cb if cb > 1 else 0


def gemm_nn(batch: Sequence[int], m: int, n: int, k: int, a_fn: Callable, b_fn: Callable, dtype: str,
            target, epilogue: Callable, out_shape: Sequence[int], out_index: Callable,
            out_name: str = "out", b_transposed: bool = False,
            tile: "GemmTile | None" = None) -> tuple[te.Tensor, Callable]:
    """``C[batch, m, n] = sum_k a_fn(batch, m, k) * b_fn(batch, k, n)`` then ``epilogue``.

    ``a_fn`` is read as broadcast scalars (m is clamped into range for overhanging tiles),
    ``b_fn`` as vectors along n. The output tensor has ``out_shape``; ``out_index(idx)`` maps
    an output index to (batch indices, m, n) of the accumulator. Returns ``(out, schedule)``.
    ``b_transposed``: B is stored [n, k] (contiguous along k); it is then always copied into a
    [k, n] workspace buffer first, in vector-sized square blocks. ``tile``: use this tile
    instead of choosing one.
    """
    tile = tile or _choose_gemm_tile(m, n, k, dtype, target, b_transposed)
    ad = acc_dtype(dtype)
    L, nw, mr = tile.lanes, tile.nw, tile.mr
    np_ = _ceil_to(n, nw * L)
    mp = _ceil_to(m, mr)
    nb = len(batch)
    if tile.pad_b:
        bp = te.compute((*batch, k, np_), lambda *i: tir.if_then_else(
            i[-1] < n, b_fn(list(i[:nb]), i[-2], tir.min(i[-1], n - 1)), tir.const(0, dtype)), name="bp")

        def b_read(bi, kk, j):
            return bp[(*bi, kk, j)]
    else:
        b_read = b_fn
    rk = te.reduce_axis((0, k), name="rk")

    def acc_f(*i):
        bi, mm, nn = list(i[:nb]), i[nb], i[nb + 1]
        mc = tir.min(mm, m - 1) if mp != m else mm
        return te.sum(cast(a_fn(bi, mc, rk), ad) * cast(b_read(bi, rk, nn), ad), axis=rk)

    acc = te.compute((*batch, mp, np_), acc_f, name="acc")

    def out_f(*idx):
        bi, mm, nn = out_index(list(idx))
        return epilogue(acc[(*bi, mm, nn)], bi, mm, nn)
    out = te.compute(tuple(out_shape), out_f, name=out_name)

    def schedule(sch, spec) -> None:
        b_acc = sch.get_sblock("acc")
        b_out = sch.get_sblock(out_name)
        loops = sch.get_loops(b_acc)
        bl, ml, nl, kl = loops[:nb], loops[nb], loops[nb + 1], loops[nb + 2]
        mo, mi = sch.split(ml, [None, mr])
        no, nr_, nv = sch.split(nl, [None, nw, L])
        cb = _gemm_column_chunk(mp, np_, k, nw * L, dtype)
        if cb:
            nco, nci = sch.split(no, [None, cb])
            outer = list(bl) + [nco, mo]
            sch.reorder(*outer, nci, kl, mi, nr_, nv)
            sch.reverse_compute_at(b_out, nci)
        else:
            outer = list(bl) + [no, mo]
            sch.reorder(*outer, kl, mi, nr_, nv)
            sch.reverse_compute_at(b_out, mo)
        sch.unroll(mi)
        sch.unroll(nr_)
        sch.vectorize(nv)
        if mp == m and np_ == n:
            ol = sch.get_loops(b_out)
            if (_extent(sch, ol[-1]) or 1) % L == 0:
                o2, v2 = sch.split(ol[-1], [None, L])
                sch.unroll(o2)
                sch.vectorize(v2)
        if math.prod(batch) * m * n * k >= parallel_min_macs(dtype):
            sch.parallel(sch.fuse(*outer))
        if tile.pad_b:
            b_bp = sch.get_sblock("bp")
            if not (b_transposed and _transpose_copy(sch, b_bp, L)):
                vectorize_copy(sch, b_bp, L)
        sch.decompose_reduction(b_acc, kl)

    return out, schedule


@dataclass(frozen=True)
class TailGemmTile:
    """``gemm_tail_columns``' tile: ``mr`` rows x ``nw`` vectors of ``lanes`` columns (the
    columns but the last ``tail`` are a whole number of such tiles); the tail as vector partial
    sums of ``k_lanes`` along k."""
    lanes: int
    nw: int
    mr: int
    tail: int
    k_lanes: int


def choose_tail_gemm_tile(m: int, n: int, k: int, dtype: str, target) -> "TailGemmTile | None":
    """The tile of ``gemm_tail_columns`` for C[m, n] = A[m, k] B[k, n], or None when it does not
    apply: float32, n whole vectors of the native width plus 1 to 4 columns (a 7x7 image is 3
    vectors of 16 and one column, 14x14 is 12 and 4), at most 24 accumulators, rows a multiple
    of the tile's, k a multiple of a vector width (the tail's dot products)."""
    if dtype != "float32" or vector_registers(target) < 32:
        # with 16 vector registers (AVX2) the tile holds 8 accumulators at most: 7x7, 320 -> 1280
        # channels ran 75 GFLOP/s against 81 with the padded small-image tile
        return None
    lanes = lane_options(target, dtype)[0][0]
    if lanes < 8:
        return None
    nvec, tail = divmod(n, lanes)
    if not 1 <= tail <= 4 or not 1 <= nvec <= 16 or k < TAIL_GEMM_MIN_K:
        return None
    k_lanes = next((v for v in (lanes, lanes // 2) if v >= 4 and k % v == 0), None)
    if k_lanes is None:
        return None
    # the tile may pass TVM's stack limit (LLVM keeps it in registers all the same): 24 of 32
    amax = min(vector_registers(target) - 8, 24)
    best, best_cost = None, None
    for nw in range(1, nvec + 1):
        if nvec % nw:
            continue
        for mr in range(1, min(m, 8) + 1):
            a = mr * nw
            if a > amax or mr * tail > 16:
                break
            if m % mr:
                continue
            # per accumulator vector and k step: FMA issue, loads (B vectors and A broadcasts)
            cost = (max(a, (nw + mr) / 2.0) + 1.0 + 0.25 * (nw + mr)) / a
            if best_cost is None or cost < best_cost - 1e-9:
                best, best_cost = (nw, mr), cost
    if best is None or best[0] * best[1] < 8:
        return None     # rows no tall tile divides (13 output channels): too few accumulators
    return TailGemmTile(lanes, best[0], best[1], tail, k_lanes)


def gemm_tail_columns(batch: int, m: int, n: int, k: int, a: te.Tensor, b, dtype: str,
                      tile: TailGemmTile, epilogue: Callable, out_name: str = "out") -> tuple[te.Tensor, Callable]:
    """``out[bi, i, j] = epilogue(sum_k a[i, k] * b[bi, k, j], bi, i, j)`` for a [m, k] matrix
    ``a`` (broadcast) and a [batch, k, n] tensor ``b`` (or a function ``b(bi, kk, j)`` reading
    one: an im2col view) whose n is ``nw`` whole vectors plus 1 or 2
    columns (``choose_tail_gemm_tile``). The whole vectors form register tiles of ``mr`` x ``nw``
    vectors (no padded copy of ``b``, every lane used); the tail columns are copied contiguous along k and computed
    as vector dot products with the tile's rows of ``a`` (in L1 by then), reduced across lanes.
    The output's loops are the skeleton: per tile of ``mr`` rows, the main accumulators (column
    tiles outside k), the tail's partial sums and their reduction, then the write-back.
    Padding a 7x7 image's 49 columns to whole vectors (56 in 8 lanes) left 1/8 of the FMAs idle:
    on Zen 4, 2048 -> 512 channels at 7x7 ran 92 -> 109 GFLOP/s, 1024 -> 256 at 14x14 89 -> 107."""
    L, nw, mr, t, kl = tile.lanes, tile.nw, tile.mr, tile.tail, tile.k_lanes
    main = n - t
    mp = _ceil_to(m, mr)
    ad = acc_dtype(dtype)

    def arow(i):
        return tir.min(i, m - 1) if mp != m else i
    b_at = b if callable(b) and not isinstance(b, te.Tensor) else (lambda bi, kk, j: b[bi, kk, j])
    rk = te.reduce_axis((0, k), name="rk")
    acc = te.compute((batch, mp, main), lambda bi, i, j: te.sum(cast(a[arow(i), rk], ad) * cast(b_at(bi, rk, j), ad),
                                                                 axis=rk), name="acc")
    bt = te.compute((batch, t, k), lambda bi, c, kk: b_at(bi, kk, main + c), name="bt")
    ko = te.reduce_axis((0, k // kl), name="ko")
    part = te.compute((batch, mp, t, kl), lambda bi, i, c, l: te.sum(
        cast(a[arow(i), ko * kl + l], ad) * cast(bt[bi, c, ko * kl + l], ad), axis=ko), name="part")
    rl = te.reduce_axis((0, kl), name="rl")
    acct = te.compute((batch, mp, t), lambda bi, i, c: te.sum(part[bi, i, c, rl], axis=rl), name="acct")

    def out_f(bi, i, j):
        v = tir.Select(j < main, acc[bi, i, tir.min(j, main - 1)], acct[bi, i, tir.max(j - main, 0)])
        return epilogue(v, bi, i, j)
    out = te.compute((batch, m, n), out_f, name=out_name)

    def schedule(sch, spec) -> None:
        b_acc, b_part = sch.get_sblock("acc"), sch.get_sblock("part")
        b_acct, b_out = sch.get_sblock("acct"), sch.get_sblock(out_name)
        # the output's loops are the skeleton: a tile of mr rows, its producers computed under it
        bl, il, jl = sch.get_loops(b_out)
        oo, oi = sch.split(il, [None, mr])
        outer = sch.fuse(bl, oo)
        sch.compute_at(b_acc, outer)
        sch.compute_at(b_acct, outer)
        sch.compute_at(b_part, outer)
        if batch * m * n * k >= parallel_min_macs(dtype):
            sch.parallel(outer)
        # main register tile: mr rows x nw vectors, k outermost
        def under(block):   # the block's loops below ``outer``
            loops = sch.get_loops(block)
            at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(outer)))
            return loops[at + 1:]
        a_i, a_j, a_k = under(b_acc)
        jo, jr, jv = sch.split(a_j, [None, nw, L])
        sch.reorder(jo, a_k, a_i, jr, jv)
        sch.unroll(a_i)
        sch.unroll(jr)
        sch.vectorize(jv)
        sch.decompose_reduction(b_acc, a_k)
        # tail: (rows, tail columns, lanes) partial sums over ko
        pl = under(b_part)
        p_k, p_l = pl[-1], pl[-2]
        sch.reorder(p_k, *pl[:-1])
        for lp in pl[:-2]:
            sch.unroll(lp)
        sch.vectorize(p_l)
        sch.decompose_reduction(b_part, p_k)
        # write-back: the whole vectors vectorized, the tail columns scalar
        ol = sch.get_loops(b_out)
        parts = sch.loop_partition(ol[-1], [main, None])
        _, v2 = sch.split(parts[0], [None, L])
        sch.vectorize(v2)

    return out, schedule


@dataclass(frozen=True)
class OverlapGemmTile:
    """``gemm_overlap_last``'s tile: ``mr`` rows x ``nw`` vectors of ``lanes`` columns."""
    lanes: int
    nw: int
    mr: int


def choose_overlap_gemm_tile(m: int, n: int, k: int, dtype: str, target) -> "OverlapGemmTile | None":
    """The tile of ``gemm_overlap_last`` for C[m, n] = A[m, k] B[k, n] with n not a multiple of
    the native vector width (DS-CNN's 125 pixels), or None: float32 on a 32-register target,
    n > one vector, a tile height dividing m and a tile width dividing the vectors."""
    if dtype != "float32" or vector_registers(target) < 32:
        return None
    lanes = lane_options(target, dtype)[0][0]
    nv = -(-n // lanes)
    if n % lanes == 0 or n < lanes or lanes < 8:
        return None
    best, best_cost = None, None
    for nw in range(1, min(nv, 4) + 1):
        if nv % nw:
            continue
        for mr in range(2, min(m, 16) + 1):
            a = mr * nw
            if a > 16:
                break
            if m % mr:
                continue
            cost = (max(a, (nw + mr) / 2.0) + 1.0 + 0.25 * (nw + mr)) / a
            if best_cost is None or cost < best_cost - 1e-9:
                best, best_cost = (nw, mr), cost
    if best is None or best[0] * best[1] < 8:
        return None
    return OverlapGemmTile(lanes, best[0], best[1])


def gemm_overlap_last(batch: int, m: int, n: int, k: int, a: te.Tensor, b: te.Tensor, dtype: str,
                      tile: OverlapGemmTile, epilogue: Callable, out_name: str = "out") -> tuple[te.Tensor, Callable]:
    """``out[bi, i, j] = epilogue(sum_k a[i, k] * b[bi, k, j], bi, i, j)`` for n not a multiple
    of the vector width (``b`` a tensor, or a function ``b(bi, kk, j)`` reading one: an im2col
    view), without a padded copy of ``b``: vector v covers the columns from
    min(v * lanes, n - lanes), so the last vector overlaps the one before it instead of running
    past the row (every load stays inside ``b``); each output column is written back from the
    vector that owns it. ``gemm_nn`` copied B into rows padded to whole vectors first: DS-CNN's
    64 -> 64 pointwise layers (125 pixels) spent about 1.3 of their 10.7 us in that copy."""
    L, nw, mr = tile.lanes, tile.nw, tile.mr
    nv = -(-n // L)
    ad = acc_dtype(dtype)
    b_at = b if callable(b) and not isinstance(b, te.Tensor) else (lambda bi, kk, j: b[bi, kk, j])

    def base(v):
        return tir.min(v * L, n - L)
    rk = te.reduce_axis((0, k), name="rk")
    acc = te.compute((batch, m, nv, L), lambda bi, i, v, l: te.sum(
        cast(a[i, rk], ad) * cast(b_at(bi, rk, base(v) + l), ad), axis=rk), name="acc")
    last = (nv - 1) * L

    def out_f(bi, i, j):
        v = tir.min(j // L, nv - 1)
        return epilogue(acc[bi, i, v, j - base(v)], bi, i, j)
    out = te.compute((batch, m, n), out_f, name=out_name)

    def schedule(sch, spec) -> None:
        b_acc, b_out = sch.get_sblock("acc"), sch.get_sblock(out_name)
        bl, il, jl = sch.get_loops(b_out)
        oo, oi = sch.split(il, [None, mr])
        outer = sch.fuse(bl, oo)
        sch.compute_at(b_acc, outer)
        if batch * m * n * k >= parallel_min_macs(dtype):
            sch.parallel(outer)
        loops = sch.get_loops(b_acc)
        at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(outer)))
        a_i, a_v, a_l, a_k = loops[at + 1:]
        vo, vr = sch.split(a_v, [None, nw])
        sch.reorder(vo, a_k, a_i, vr, a_l)
        sch.unroll(a_i)
        sch.unroll(vr)
        sch.vectorize(a_l)
        sch.decompose_reduction(b_acc, a_k)
        ol = sch.get_loops(b_out)
        parts = sch.loop_partition(ol[-1], [last, None])
        _, v2 = sch.split(parts[0], [None, L])
        sch.vectorize(v2)

    return out, schedule


def _transpose_copy(sch, block, lanes: int) -> bool:
    """Schedule ``dst[.., k, n] = src[.., n, k]`` in lanes x lanes blocks (vector along n)."""
    loops = sch.get_loops(block)
    kl, nl = loops[-2], loops[-1]
    exts = [_extent(sch, lp) for lp in loops]
    if any(e is None for e in exts) or exts[-2] % lanes or exts[-1] % lanes:
        return False
    total = math.prod(exts)
    ko, ki = sch.split(kl, [None, lanes])
    no, ni = sch.split(nl, [None, lanes])
    sch.reorder(*loops[:-2], no, ko, ki, ni)
    sch.unroll(ki)
    sch.vectorize(ni)
    if total >= (1 << 15):
        sch.parallel(sch.fuse(*loops[:-2], no) if len(loops) > 2 else no)
    return True


# -- dense: y = x @ w.T (both contiguous along k) ------------------------------------------------
# a float GEMV (few rows) whose weights are at least this large streams them from memory: two cores
# read it at about twice the bandwidth of one, whatever its MAC count
GEMV_PARALLEL_MIN_WEIGHT_BYTES = 1 << 21


def _streams_weights(m: int, n: int, k: int, dtype: str) -> bool:
    return (str(dtype).startswith("float") and m <= 8 and n >= 16
            and n * k * _bits(dtype) // 8 >= GEMV_PARALLEL_MIN_WEIGHT_BYTES)


def dense_nt(m: int, n: int, k: int, x: te.Tensor, w: te.Tensor, dtype: str, target,
             epilogue: Callable, out_name: str = "out") -> tuple[te.Tensor, Callable]:
    """``y[m, n] = epilogue(sum_k x[m, k] * w[n, k], m, n)`` with vector partial sums over k."""
    ad = acc_dtype(dtype)
    lanes = lane_options(target, dtype)[0][0]
    L = 1
    for v in (lanes, lanes // 2, lanes // 4, 2):
        if v >= 2 and k % v == 0:
            L = v
            break
    amax = max(1, min(vector_registers(target) - 6, (STACK_LIMIT_BYTES - 4) // (L * _bits(ad) // 8), 16))
    best, best_cost = (1, 1), None
    for mr in range(1, min(m, 8) + 1):
        for nn in range(1, 17):
            a = mr * nn
            if a > amax or nn > n:
                break
            if ad.startswith("float") and nn > 1 and (_rows_per_cache_set(k * _bits(dtype) // 8, mr) +
                                                      _rows_per_cache_set(k * _bits(dtype) // 8, nn)) > L1_WAYS:
                # the tile's rows of x and w (k elements apart) would share more L1 sets than it has
                # ways (rows a multiple of 4 KiB apart all fall in one set) and evict each other on
                # every step: [1, 16384] x [64, 16384]^T ran 72-78 us with 13-15 rows, 58 us with 8
                break
            mp, np_ = _ceil_to(m, mr), _ceil_to(n, nn)
            tiles = (mp // mr) * (np_ // nn)
            # every operand row is its own memory stream: count one cycle per vector load
            step = max(a, float(mr + nn)) + 1.0
            cost = tiles * (k // L) * step + tiles * a * (L + 2) + m * n * 1.5
            if best_cost is None or cost < best_cost - 1e-9:
                best, best_cost = (mr, nn), cost
    mr, nn = TILE_OVERRIDE.get("dense", best)
    mp, np_ = _ceil_to(m, mr), _ceil_to(n, nn)
    ko = te.reduce_axis((0, k // L), name="ko")

    def part_f(i, j, l):
        ic = tir.min(i, m - 1) if mp != m else i
        jc = tir.min(j, n - 1) if np_ != n else j
        return te.sum(cast(x[ic, ko * L + l], ad) * cast(w[jc, ko * L + l], ad), axis=ko)
    part = te.compute((mp, np_, L), part_f, name="part")
    rl = te.reduce_axis((0, L), name="rl")
    acc = te.compute((m, n), lambda i, j: te.sum(part[i, j, rl], axis=rl), name="acc")
    out = te.compute((m, n), lambda i, j: epilogue(acc[i, j], i, j), name=out_name)

    def schedule(sch, spec) -> None:
        b_part, b_acc, b_out = sch.get_sblock("part"), sch.get_sblock("acc"), sch.get_sblock(out_name)
        pi, pj, pl, pk = sch.get_loops(b_part)
        po, pii = sch.split(pi, [None, mr])
        pjo, pji = sch.split(pj, [None, nn])
        sch.reorder(pjo, po, pk, pii, pji, pl)
        sch.reverse_compute_at(b_acc, po)
        sch.reverse_compute_at(b_out, po)
        sch.unroll(pii)
        sch.unroll(pji)
        if L > 1:
            sch.vectorize(pl)
        if m * n * k >= parallel_min_macs(dtype) or _streams_weights(m, n, k, dtype):
            sch.parallel(sch.fuse(pjo, po))
        sch.decompose_reduction(b_part, pk)

    return out, schedule


# -- parameters seen through another shape ----------------------------------------------------------
def with_param_shapes(func, shapes: dict):
    """``func`` with parameter ``i`` declared with shape ``shapes[i]`` (same dtype, same number of
    elements, row-major): the body keeps addressing the buffer it was scheduled on, now a view
    (``DeclBuffer``) of the parameter's data. The kernel checks its arguments against the new
    shapes. Used to run a 1x1 convolution as a GEMM over flattened pixels."""
    params = list(func.params)
    decls = []
    for i, shape in sorted(shapes.items()):
        old = params[i]
        if math.prod(int(d) for d in old.shape) != math.prod(int(d) for d in shape):
            raise ValueError(f"with_param_shapes: {list(old.shape)} and {list(shape)} differ in size")
        new = tir.decl_buffer(tuple(int(d) for d in shape), old.dtype, old.name)
        decls.append(tir.DeclBuffer(old, data=new.data))
        params[i] = new
    if not decls:
        return func
    return tir.PrimFunc(params, tir.SeqStmt(decls + [func.body]), ret_type=func.ret_type, attrs=func.attrs)
