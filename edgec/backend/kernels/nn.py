"""Kernel generators for the nn op group (docs/ops.md, edgec/ops/nn.py).

conv, conv_transpose, max_pool and avg_pool use the register-tiled direct convolution of
``_nn_sched`` (pools as a depthwise window reduction with max, or sum and a divisor), except
float ungrouped convs on AVX-512 whose output rows are not whole vectors (at most one vector:
resnet50's 14x14 and 7x7 stages; longer with more than one tap: its 3x3 at 56x56), which put 16
output channels in each vector's lanes (``_conv_oc_lanes``, weights stored [O/16, KH, KW, C, 16]
at compile time), and
float 1x1 stride-1 convolutions on images whose rows fill vectors badly (25x5, 14x14, 7x7),
which run as ``gemm_nn`` over the flattened pixels (the kernel sees its arguments through
``with_param_shapes``), or, on AVX-512 targets where the pixels are whole vectors and 1-4 more
(7x7 = 3 x 16 + 1, 14x14 = 12 x 16 + 4), as ``gemm_tail_columns``; other float convs with such
outputs (3x3, strided 1x1) run as ``gemm_tail_columns`` over an im2col copy when it fits L2
(``_conv_im2col_tail``); the other GEMM-form 1x1 convs whose pixels are not whole vectors
(DS-CNN's 125) run as ``gemm_overlap_last`` (no padded copy of X); float dense convs on rows of
at most half a vector whose pixels are not whole vectors (DS-CNN's first conv) run as
``gemm_overlap_last`` over an im2col copy (``_conv_im2col_overlap``); float stride-1 depthwise
convs on such rows that keep the image size (DS-CNN's 25x5, MobileNetV2's 7x7) run over each
channel's flattened pixels (``_conv_flat_depthwise``). A conv's optional attrs ``act_min`` /
``act_max`` clamp its output (a fused relu / clip), its optional fourth input ``residual`` is
added before that (a fused add; every path, ``_bias_epilogue``);
conv_transpose runs as a stride-1 convolution over the zero-inserted, padded input with the
kernel flipped (the zero-insertion costs stride^rank times the MACs of a scatter form).
Global pools (with a scalar tail when the row is not a whole number of vectors),
normalizations and softmax reduce rows with vector partial results and keep
their statistics per row (``compute_at`` under the row loop); resize precomputes per-axis
tap tables; batch_norm and depth/space use the default elementwise schedule.

Numerics follow the numpy references in edgec/ops/nn.py: float16 is computed in float32 and
rounded once; normalizations use two passes (mean, then centered variance); softmax's
float32 exp is ``_nn_sched.fast_exp`` (within 1 ulp, vectorized; libm's is one call per
lane); resize computes its source coordinates in float64 exactly as the reference does, so
nearest-neighbour choices on .5 boundaries agree.
"""
from __future__ import annotations

import numpy as np

import math
from dataclasses import dataclass
from typing import Sequence

import tvm
from tvm import te

from ._nn_sched import (NO_TIR_CSE_ATTR, ConvProblem, _extent, acc_dtype, cast, conv_direct, dtype_of, fast_exp,
                        gemm_nn, lane_options, lowest_value, max_reduce, scheduled, with_param_shapes)
from . import _nn_sched as _ns
from .common import placeholder, prim_func
from .quant_conv import Packing, packing_attrs, prepack_rule, weight_shape
from .registry import KernelSpec, TensorType, kernel

tir = tvm.tirx


def _ints(v) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


def _zero(dtype: str):
    return tir.const(0, dtype)


def _lanes(spec: KernelSpec, dtype: str) -> int:
    return lane_options(spec.target, dtype)[0][0]


def _out(spec: KernelSpec, i: int = 0) -> tuple[tuple[int, ...], str]:
    t = spec.outputs[i]
    return tuple(int(d) for d in t.shape), t.dtype


# -- conv -----------------------------------------------------------------------------------------
def conv_problem(spec: KernelSpec, x: te.Tensor, w: te.Tensor, load=None, fill=None, dtype: str | None = None
                 ) -> ConvProblem:
    """The ConvProblem of a conv node: geometry from its attrs, and virtual-input/weight readers.

    ``load`` converts a loaded element (identity by default; qconv widens to int32), ``fill`` is the
    value of padding (zero by default; qconv pads with the input zero point), ``dtype`` the
    accumulation type (the input's by default).
    """
    load = load or (lambda e: e)
    dtype = dtype or str(x.dtype)
    fill = _zero(dtype) if fill is None else fill
    n, c, *in_sp = _ints(x.shape)
    ks = _ints(w.shape[2:])
    r = len(ks)
    pads = _ints(spec.attrs["pads"])
    pb = pads[:r]

    def vfun(nn, cc, v):
        src = [v[i] - pb[i] for i in range(r)]
        conds = []
        for i in range(r):
            if pb[i] > 0:
                conds.append(src[i] >= 0)
            conds.append(src[i] < in_sp[i])
        return tir.if_then_else(tir.all(*conds), load(x[(nn, cc, *src)]), fill)

    direct = None
    if not any(pads):
        def direct(nn, cc, v):
            return load(x[(nn, cc, *v)])

    return ConvProblem(n=n, c=c, oc=int(w.shape[0]), groups=int(spec.attrs.get("group", 1)),
                       out=tuple(_ints(spec.outputs[0].shape)[2:]), kernel=ks, strides=_ints(spec.attrs["strides"]),
                       dilations=_ints(spec.attrs["dilations"]), in_shape=tuple(in_sp), vfun=vfun,
                       wfun=lambda o, ic, t: load(w[(o, ic, *t)]), direct=direct, dtype=dtype,
                       pad_begin=tuple(pb))


@kernel("conv")
def conv(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    w = placeholder(spec, 1, "w")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    b = placeholder(spec, 2, "bias") if has_bias else None
    out_shape, out_dtype = _out(spec)
    lanes_tile = _oc_lanes_plan(spec)
    if lanes_tile is not None:
        return _conv_oc_lanes(spec, x, b, out_shape, out_dtype, lanes_tile)
    plan = _pointwise_gemm(spec, x, w)
    if plan is not None:
        return _conv_as_gemm(spec, x, w, b, out_shape, out_dtype, plan)
    if _strided_pointwise_plan(spec, x, w):
        return _conv_strided_pointwise(spec, x, w, b, out_shape, out_dtype)
    flat = _flat_depthwise_plan(spec, x, w)
    if flat is not None:
        return _conv_flat_depthwise(spec, x, w, b, out_shape, out_dtype, flat)
    im2col = _im2col_tail_plan(spec, x, w)
    if im2col is not None:
        return _conv_im2col_tail(spec, x, w, b, out_shape, out_dtype, im2col)
    overlap = _im2col_overlap_plan(spec, x, w)
    if overlap is not None:
        return _conv_im2col_overlap(spec, x, w, b, out_shape, out_dtype, overlap)
    dense = _flat_dense_plan(spec, x, w)
    if dense is not None:
        return _conv_flat_dense(spec, x, w, b, out_shape, out_dtype, *dense)
    dense_s = _flat_dense_strided_plan(spec, x, w)
    if dense_s is not None:
        return _conv_flat_dense_strided(spec, x, w, b, out_shape, out_dtype, *dense_s)
    res = _residual(spec, flat=False)
    out, sched = conv_direct(conv_problem(spec, x, w), spec.target,
                             _bias_epilogue(b, out_dtype, *_act_bounds(spec), res=res), out_dtype)
    ins = [x, w] + ([b] if b is not None else []) + ([res] if res is not None else [])
    return scheduled(spec, ins, [out], sched)


def _residual(spec: KernelSpec, flat: bool):
    """The placeholder of a conv's optional ``residual`` input (added in the epilogue), None when
    absent; ``flat``: seen as [n, oc, pixels] (the GEMM forms address pixels flat, and
    ``_param_shapes`` declares the parameter with its real shape)."""
    if len(spec.inputs) < 4 or spec.inputs[3] is None:
        return None
    t = placeholder(spec, 3, "residual")
    if not flat:
        return t
    shp = _ints(t.shape)
    return te.placeholder((shp[0], shp[1], math.prod(shp[2:])), t.dtype, name="residual")


def _param_shapes(func, shapes: dict, ins: list, res, out_shape):
    """``with_param_shapes`` for the flat forms: ``shapes`` for the inputs, then the residual (the
    last input when present) and the output with the output's real shape."""
    shapes = dict(shapes)
    if res is not None:
        shapes[len(ins) - 1] = tuple(out_shape)
    shapes[len(ins)] = tuple(out_shape)
    return with_param_shapes(func, shapes)


def _pointwise_gemm(spec: KernelSpec, x: te.Tensor, w: te.Tensor):
    """A 1x1, stride-1, unpadded, ungrouped convolution is the GEMM W[oc, c] @ X[c, pixels]. Run
    it so (vectors along all of an image's pixels, not along one row) when that fills vectors
    better than the rows do. Returns None (direct convolution), False (GEMM, its own tile
    choice) or the GEMM tile to use."""
    if "conv" in _ns.TILE_OVERRIDE:     # a forced direct-convolution tile (tests, experiments)
        return None
    if int(spec.attrs.get("group", 1)) != 1 or any(_ints(spec.attrs["pads"])):
        return None
    if any(k != 1 for k in _ints(w.shape[2:])) or any(s != 1 for s in _ints(spec.attrs["strides"])):
        return None
    sp = _ints(x.shape[2:])
    dtype = str(x.dtype)
    if not sp or dtype not in ("float32", "float16"):
        return None
    lanes = _lanes(spec, dtype)
    half = lanes // 2
    hw, w_, c, oc = math.prod(sp), sp[-1], int(x.shape[1]), int(w.shape[0])
    acc_lanes = _lanes(spec, acc_dtype(dtype))
    tail = _ns.choose_tail_gemm_tile(oc, hw, c, dtype, spec.target) if TAIL_GEMM else None
    if tail is not None:
        return tail
    if half >= 4 and hw > lanes and -(-hw // half) <= 7 and oc >= 3 and acc_lanes == lanes:
        # a small image (7x7): one tile row of half-width vectors covers all its pixels, three
        # output channels per tile (21 accumulators); 90-96 GFLOP/s on Zen 4, where both
        # 16-lane tiles (64 columns for 49 pixels) and the direct convolution made 73-85
        return _ns.GemmTile(half, -(-hw // half), 3, hw % half != 0)
    if c > POINTWISE_GEMM_MAX_K:
        return None

    def used(v, ls):   # fraction of vector lanes holding real outputs
        return v / (-(-v // ls) * ls)
    if used(hw, lanes) > used(w_, lanes) + 0.02:
        return False
    return None


# a float32 1x1 convolution with strides > 1 (no padding, ungrouped) whose output pixels are whole
# vectors and at least ``STRIDED_POINTWISE_MIN_PIXELS`` runs as a copy of the pixels it reads
# (``xs[n, c, oy*ow + ox] = x[n, c, oy*sh, ox*sw]``) then ``gemm_nn``: resnet50's 256 -> 512
# stride-2 downsampling (56x56 -> 28x28) 2.35 -> 2.0 ms, where the direct convolution's
# subsampled phase copy fed 16-pixel rows tiles (False: the direct convolution)
STRIDED_POINTWISE_GEMM = True
STRIDED_POINTWISE_MIN_PIXELS = 256


def _strided_pointwise_plan(spec: KernelSpec, x: te.Tensor, w: te.Tensor) -> bool:
    if not STRIDED_POINTWISE_GEMM or "conv" in _ns.TILE_OVERRIDE or str(x.dtype) != "float32":
        return False
    if len(x.shape) != 4 or int(spec.attrs.get("group", 1)) != 1 or any(_ints(spec.attrs["pads"])):
        return False
    st = _ints(spec.attrs["strides"])
    if any(k != 1 for k in _ints(w.shape[2:])) or all(v == 1 for v in st):
        return False
    if any(d != 1 for d in _ints(spec.attrs["dilations"])):
        return False
    oh, ow = _ints(spec.outputs[0].shape)[2:]
    hw = oh * ow
    return hw >= STRIDED_POINTWISE_MIN_PIXELS and hw % _lanes(spec, "float32") == 0


def _conv_strided_pointwise(spec: KernelSpec, x: te.Tensor, w: te.Tensor, b, out_shape, out_dtype: str):
    n, c = _ints(x.shape[:2])
    oc = int(w.shape[0])
    oh, ow = _ints(spec.outputs[0].shape)[2:]
    sh, sw = _ints(spec.attrs["strides"])
    hw = oh * ow
    xs = te.compute((n, c, hw), lambda bi, cc, j: x[bi, cc, (j // ow) * sh, (j % ow) * sw], name="xs")
    w2 = te.placeholder((oc, c), w.dtype, name="w")
    res = _residual(spec, flat=True)
    epi = _bias_epilogue(b, out_dtype, *_act_bounds(spec), res=res)
    out, sched = gemm_nn((n,), oc, hw, c, lambda bi, mm, kk: w2[mm, kk], lambda bi, kk, j: xs[bi[0], kk, j],
                         "float32", spec.target, lambda acc, bi, mm, j: epi(acc, bi[0], mm, [j]),
                         (n, oc, hw), lambda idx: ([idx[0]], idx[1], idx[2]))

    def schedule(sch, spec_):
        sched(sch, spec_)
        blk = sch.get_sblock("xs")
        loops = sch.get_loops(blk)
        # one output row per iteration (a strided gather of the input row, vectorized)
        jo, ji = sch.split(loops[-1], [None, ow])
        sch.vectorize(ji)
        if n * oc * hw * c >= _ns.parallel_min_macs("float32") and c > 1:
            sch.parallel(sch.fuse(loops[0], loops[1]) if n > 1 else loops[1])
    ins = [x, w2] + ([b] if b is not None else []) + ([res] if res is not None else [])
    func = scheduled(spec, ins, [out], schedule)
    return _param_shapes(func, {1: _ints(w.shape)}, ins, res, out_shape)


# float 1x1 convolutions whose pixels are whole vectors and 1-4 more (7x7 = 3 x 16 + 1, 14x14 =
# 12 x 16 + 4) run as ``_nn_sched.gemm_tail_columns`` where ``choose_tail_gemm_tile`` allows
# (False: the small-image tile of padded 8-lane vectors / gemm_nn / the direct convolution)
TAIL_GEMM = True

# the GEMM form of a 1x1 conv whose pixels are not whole vectors (DS-CNN's 125) reads X directly,
# its last vector overlapping the one before (``_nn_sched.gemm_overlap_last``; False: gemm_nn
# with a padded copy of X)
OVERLAP_GEMM = True

# the GEMM form streams its weights once per block of pixel columns and keeps no K blocking:
# from this many input channels the direct convolution (blocked by its cost model) is faster
# (1024 -> 256 channels at 14x14: 1.6 ms against 1.1 ms)
POINTWISE_GEMM_MAX_K = 640


def _conv_as_gemm(spec: KernelSpec, x: te.Tensor, w: te.Tensor, b, out_shape, out_dtype: str, tile):
    n, c = _ints(x.shape[:2])
    oc = int(w.shape[0])
    hw = math.prod(_ints(x.shape[2:]))
    x3 = te.placeholder((n, c, hw), x.dtype, name="x")
    w2 = te.placeholder((oc, c), w.dtype, name="w")
    res = _residual(spec, flat=True)
    epi = _bias_epilogue(b, out_dtype, *_act_bounds(spec), res=res)
    if tile is False and OVERLAP_GEMM:
        tile = _ns.choose_overlap_gemm_tile(oc, hw, c, str(x.dtype), spec.target) or False
    if isinstance(tile, _ns.TailGemmTile):
        out, sched = _ns.gemm_tail_columns(n, oc, hw, c, w2, x3, str(x.dtype), tile,
                                           lambda acc, bi, mm, j: epi(acc, bi, mm, [j]))
    elif isinstance(tile, _ns.OverlapGemmTile):
        out, sched = _ns.gemm_overlap_last(n, oc, hw, c, w2, x3, str(x.dtype), tile,
                                           lambda acc, bi, mm, j: epi(acc, bi, mm, [j]))
    else:
        out, sched = gemm_nn((n,), oc, hw, c, lambda bi, mm, kk: w2[mm, kk], lambda bi, kk, j: x3[bi[0], kk, j],
                             str(x.dtype), spec.target, lambda acc, bi, mm, j: epi(acc, bi[0], mm, [j]),
                             (n, oc, hw), lambda idx: ([idx[0]], idx[1], idx[2]), tile=tile or None)
    ins = [x3, w2] + ([b] if b is not None else []) + ([res] if res is not None else [])
    func = scheduled(spec, ins, [out], sched)
    return _param_shapes(func, {0: _ints(x.shape), 1: _ints(w.shape)}, ins, res, out_shape)


# a float convolution other than a 1x1 stride-1 one (3x3 kernels, strided 1x1) whose output pixels
# are whole vectors and 1-4 more (7x7, 14x14) runs as ``gemm_tail_columns`` over an im2col copy of
# its input when that copy (K = c*kh*kw rows of the output's pixels) stays in L2: resnet50's
# 512-channel 3x3 on 7x7 and its stride-2 1x1 downsamplings (False: the direct convolution)
IM2COL_TAIL_GEMM = True
IM2COL_MAX_BYTES = 1 << 20


def _im2col_tail_plan(spec: KernelSpec, x: te.Tensor, w: te.Tensor):
    """The ``TailGemmTile`` of the im2col form of this conv, or None (direct convolution)."""
    if not IM2COL_TAIL_GEMM or "conv" in _ns.TILE_OVERRIDE or not TAIL_GEMM:
        return None
    if str(x.dtype) != "float32" or len(x.shape) != 4 or int(spec.attrs.get("group", 1)) != 1:
        return None
    out_sp = _ints(spec.outputs[0].shape)[2:]
    k = int(w.shape[1]) * math.prod(_ints(w.shape[2:]))
    hw = math.prod(out_sp)
    if int(x.shape[0]) * k * hw * 4 > IM2COL_MAX_BYTES:
        return None
    return _ns.choose_tail_gemm_tile(int(w.shape[0]), hw, k, "float32", spec.target)


def _conv_im2col_tail(spec: KernelSpec, x: te.Tensor, w: te.Tensor, b, out_shape, out_dtype: str, tile):
    """``cols[n, (c, ky, kx), (oy, ox)]`` = the padded input under tap (ky, kx) of output pixel
    (oy, ox), then ``out = W[oc, c*kh*kw] @ cols`` by ``gemm_tail_columns``."""
    n, c = _ints(x.shape[:2])
    oc = int(w.shape[0])
    kh, kw = _ints(w.shape[2:])
    oh, ow = _ints(spec.outputs[0].shape)[2:]
    sh, sw = _ints(spec.attrs["strides"])
    dh, dw = _ints(spec.attrs["dilations"])
    k, hw = c * kh * kw, oh * ow
    prob = conv_problem(spec, x, w)
    cols = te.compute((n, c, kh, kw, oh, ow), lambda bi, cc, ky, kx, oy, ox: prob.vfun(
        bi, cc, [oy * sh + ky * dh, ox * sw + kx * dw]), name="cols")
    w2 = te.placeholder((oc, k), w.dtype, name="w")
    res = _residual(spec, flat=True)
    epi = _bias_epilogue(b, out_dtype, *_act_bounds(spec), res=res)

    def b_fn(bi, kk, j):
        return cols[bi, kk // (kh * kw), (kk // kw) % kh, kk % kw, j // ow, j % ow]
    out, sched = _ns.gemm_tail_columns(n, oc, hw, k, w2, b_fn, "float32", tile,
                                       lambda acc, bi, mm, j: epi(acc, bi, mm, [j]))

    def schedule(sch, spec_):
        sched(sch, spec_)
        blk = sch.get_sblock("cols")
        loops = sch.get_loops(blk)
        # each (channel, tap) row: the output pixels along the innermost loops (LLVM vectorizes
        # the stride-1 runs); in parallel over channels when the GEMM is
        if n * oc * hw * k >= _ns.parallel_min_macs("float32") and c > 1:
            sch.parallel(sch.fuse(loops[0], loops[1]) if n > 1 else loops[1])
    ins = [x, w2] + ([b] if b is not None else []) + ([res] if res is not None else [])
    func = scheduled(spec, ins, [out], schedule)
    return _param_shapes(func, {1: _ints(w.shape)}, ins, res, out_shape)


# -- float convolution with output channels in the vector lanes -----------------------------------
# a float32 ungrouped 2-D convolution on AVX-512 (32 vector registers) whose output rows fill
# vectors badly (14x14: 14 of 16 lanes; 7x7; with more than one tap also 56 = 3.5 vectors) and
# whose output channels are whole vectors runs with L output channels in each vector's lanes
# (``_conv_oc_lanes``): acc[n, o/L, oy, ox, o%L] summed over (ky, kx, c), a register tile of
# ``obr`` channel blocks x ``pr`` pixels of one row, each input element broadcast to the tile's
# channel blocks. Every lane holds a real output whatever the image width. Its weights are read
# as [O/L, KH, KW, C, L] (stored so in the artifact: ``_conv_oc_lanes_prepack``, else packed per
# call; the reduction order follows the layout: with c outermost LLVM unrolled kx and kept the
# broadcasts shared by neighbouring taps live, 96 against 115 GFLOP/s). False: the other forms.
OC_LANES = True
# tiles of at most this many accumulator vectors (of 32 registers: the rest hold the block's
# weight vectors and the broadcast input)
OC_LANES_MAX_ACC = 28
OC_LANES_MIN_ACC_1X1 = 24
# also convs with more than one tap on rows longer than a vector that are not whole vectors (tiles
# of a divisor of the row): resnet50's 3x3 on 56x56, 64 channels, 2106 -> 2075 us, its stride-2
# 3x3 56 -> 28, 128 channels, 2148 -> 2066 us (Zen 4, kernel alone)
OC_LANES_WIDE = True
OC_LANES_LAYOUT = "oc{L}"


@dataclass(frozen=True)
class OcLanesTile:
    lanes: int      # output channels per vector
    obr: int        # channel blocks per register tile
    pr: int         # output pixels (of one row) per register tile


def _oc_lanes_plan(spec: KernelSpec) -> OcLanesTile | None:
    """The tile of ``_conv_oc_lanes`` for this conv spec, or None. A pure function of the spec
    (the prepack rule and the dispatch both call it)."""
    if not OC_LANES or "conv" in _ns.TILE_OVERRIDE:
        return None
    x = spec.inputs[0]
    if x is None or len(spec.inputs) < 2 or spec.inputs[1] is None:
        return None
    if str(x.dtype) != "float32" or len(x.shape) != 4 or int(spec.attrs.get("group", 1)) != 1:
        return None
    if _ns.vector_registers(spec.target) < 32:
        return None
    L = _lanes(spec, "float32")
    if L < 16:
        return None
    w_shape = weight_shape(spec)
    oc, c = w_shape[0], w_shape[1]
    oh, ow = _ints(spec.outputs[0].shape)[2:]
    if oc % L or c < 16 or ow % L == 0:
        return None
    if ow > L and (not OC_LANES_WIDE or w_shape[2] * w_shape[3] == 1):
        # rows of more than a vector: 1x1 convs there are GEMMs over whole vectors of pixels
        # (114-116 GFLOP/s either way: resnet50's 28x28 and 56x56 1x1 convs)
        return None
    nb = oc // L
    # pixels of one row per tile: the whole row, or its largest divisor leaving >= 2 channel blocks
    best = None
    for pr in range(ow, 0, -1):
        if ow % pr:
            continue
        # live registers: the accumulators, the vectors of the tile's inner loop (the channel
        # blocks' weights, or the pixels' broadcasts) and one of the other
        obr = max((d for d in range(1, nb + 1) if nb % d == 0 and d * pr <= OC_LANES_MAX_ACC
                   and d * pr + min(d, pr) + 1 <= 32), default=0)
        if obr == 0:
            continue
        a = obr * pr
        # per k step: a FMAs, obr weight loads, pr broadcasts
        cost = (max(a, (obr + pr) / 2.0) + 0.25 * (obr + pr)) / a
        if best is None or cost < best[0] - 1e-9:
            best = (cost, obr, pr)
    if best is None or best[1] * best[2] < 12:
        return None
    st = _ints(spec.attrs["strides"])
    if w_shape[2] * w_shape[3] == 1 and all(v == 1 for v in st) and best[1] * best[2] < OC_LANES_MIN_ACC_1X1:
        # a 1x1 stride-1 conv is a GEMM whose forms fill every lane already (tail columns): the
        # lanes form wins there only with a full tile (7x7, 2048 <-> 512, resnet50: 1.05-1.08 ms
        # with 2 x 7 accumulators, against 0.92-0.98 ms for the tail GEMM)
        return None
    return OcLanesTile(L, best[1], best[2])


def pack_oc_lanes(w: np.ndarray, lanes: int) -> np.ndarray:
    """[O, C, KH, KW] -> [O/L, KH, KW, C, L] (O a multiple of L)."""
    w = np.asarray(w)
    o, c, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(o // lanes, lanes, c, kh, kw).transpose(0, 3, 4, 2, 1))


@prepack_rule("conv")
def _conv_oc_lanes_prepack(spec: KernelSpec) -> dict:
    if spec.attrs.get("w_layout"):
        return {}
    tile = _oc_lanes_plan(spec)
    if tile is None:
        return {}
    w = spec.inputs[1]
    o, c, kh, kw = _ints(w.shape)
    L = tile.lanes
    layout = OC_LANES_LAYOUT.format(L=L)
    return {1: Packing(layout, TensorType(w.dtype, (o // L, kh, kw, c, L)), lambda a: pack_oc_lanes(a, L),
                       packing_attrs(layout, w.shape))}


def _conv_oc_lanes(spec: KernelSpec, x: te.Tensor, b, out_shape, out_dtype: str, tile: OcLanesTile):
    L, obr, pr = tile.lanes, tile.obr, tile.pr
    n, c, ih, iw = _ints(x.shape)
    oc, _, kh, kw = weight_shape(spec)
    nb = oc // L
    oh, ow = _ints(spec.outputs[0].shape)[2:]
    sh, sw = _ints(spec.attrs["strides"])
    dh, dw = _ints(spec.attrs["dilations"])
    pads = _ints(spec.attrs["pads"])
    pt, pl = pads[0], pads[1]
    packed = bool(spec.attrs.get("w_layout"))
    if packed:
        w_in = wp = te.placeholder((nb, kh, kw, c, L), "float32", name="w")
    else:
        w_in = placeholder(spec, 1, "w")
        wp = te.compute((nb, kh, kw, c, L), lambda ob, ky, kx, cc, l: w_in[ob * L + l, cc, ky, kx], name="wp")
    rows = (oh - 1) * sh + (kh - 1) * dh + 1
    cols = (ow - 1) * sw + (kw - 1) * dw + 1
    copy = any(pads)
    if copy:
        def xp_f(bi, cc, r, q):
            y, xx = r - pt, q - pl
            inside = tir.all(y >= 0, y < ih, xx >= 0, xx < iw)
            return tir.if_then_else(inside, x[bi, cc, tir.min(tir.max(y, 0), ih - 1), tir.min(tir.max(xx, 0), iw - 1)],
                                    tir.const(0.0, "float32"))
        xp = te.compute((n, c, rows, cols), xp_f, name="xp")
    else:
        xp = x
    rc = te.reduce_axis((0, c), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    acc = te.compute((n, nb, oh, ow, L), lambda bi, ob, oy, ox, l: te.sum(
        xp[bi, rc, oy * sh + ry * dh, ox * sw + rx * dw] * wp[ob, ry, rx, rc, l], axis=[ry, rx, rc]), name="acc")
    res = _residual(spec, flat=False)
    epi = _bias_epilogue(b, out_dtype, *_act_bounds(spec), res=res)
    out = te.compute(tuple(out_shape), lambda bi, o, oy, ox: epi(acc[bi, o // L, oy, ox, o % L], bi, o, [oy, ox]),
                     name="out")
    macs = n * oc * oh * ow * c * kh * kw

    def schedule(sch, _spec):
        b_acc, b_out = sch.get_sblock("acc"), sch.get_sblock("out")
        bl, ol, yl, xl = sch.get_loops(b_out)
        obo, obi, li = sch.split(ol, [None, obr, L])
        xo, xi = sch.split(xl, [None, pr])
        sch.reorder(bl, obo, yl, xo, obi, li, xi)
        outer = sch.fuse(bl, obo, yl) if n > 1 else sch.fuse(obo, yl)
        if macs >= _ns.parallel_min_macs("float32"):
            sch.parallel(outer)
        sch.compute_at(b_acc, xo)
        loops = sch.get_loops(b_acc)
        at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(xo)))
        # (channel blocks, pixels, lanes) then (ky, kx, c): the loops of extent 1 are gone
        n_red = 1 + (kh > 1) + (kw > 1)
        below = loops[at + 1:]
        red, spatial = below[-n_red:], below[:-n_red]
        ob_l = spatial[0] if obr > 1 else None
        x_l = spatial[-2] if pr > 1 else None
        # the smaller of (channel blocks, pixels) innermost: its vectors stay live across the
        # other (obr weights, or pr broadcasts)
        order = [x_l, ob_l] if obr <= pr else [ob_l, x_l]
        order = [lp for lp in order if lp is not None]
        sch.reorder(*red, *order, spatial[-1])
        for lp in order:
            sch.unroll(lp)
        sch.vectorize(spatial[-1])
        sch.decompose_reduction(b_acc, red[0])
        sch.unroll(obi)
        if pr > 1:
            sch.vectorize(xi)
        if not packed:
            lw = sch.get_loops(sch.get_sblock("wp"))
            sch.vectorize(lw[-1])
            if macs >= _ns.parallel_min_macs("float32"):
                sch.parallel(lw[0])
        if copy:
            lx = sch.get_loops(sch.get_sblock("xp"))
            sch.vectorize(lx[-1])
            if macs >= _ns.parallel_min_macs("float32"):
                sch.parallel(sch.fuse(lx[0], lx[1]) if n > 1 else lx[1])
    ins = [x, w_in] + ([b] if b is not None else []) + ([res] if res is not None else [])
    return scheduled(spec, ins, [out], schedule)


# a float32 dense convolution other than 1x1 stride 1 whose output rows are at most half a vector
# and whose pixels are not whole vectors (DS-CNN's first conv: 10x4 stride 2, 1 -> 64 channels on
# 25x5) runs as ``gemm_overlap_last`` over an im2col copy of its input when that copy stays in
# L2 (``_conv_im2col_overlap``; False: the direct convolution)
IM2COL_OVERLAP_GEMM = True


def _im2col_overlap_plan(spec: KernelSpec, x: te.Tensor, w: te.Tensor):
    """The ``OverlapGemmTile`` of the im2col form of this conv, or None (direct convolution)."""
    if not IM2COL_OVERLAP_GEMM or "conv" in _ns.TILE_OVERRIDE or not OVERLAP_GEMM:
        return None
    if str(x.dtype) != "float32" or len(x.shape) != 4 or int(spec.attrs.get("group", 1)) != 1:
        return None
    if all(v == 1 for v in _ints(w.shape[2:]) + _ints(spec.attrs["strides"])):
        return None       # a 1x1 stride-1 conv is a GEMM already (``_pointwise_gemm``)
    oh, ow = _ints(spec.outputs[0].shape)[2:]
    k = int(w.shape[1]) * math.prod(_ints(w.shape[2:]))
    hw = oh * ow
    if 2 * ow > _lanes(spec, "float32") or int(x.shape[0]) * k * hw * 4 > IM2COL_MAX_BYTES:
        return None
    return _ns.choose_overlap_gemm_tile(int(w.shape[0]), hw, k, "float32", spec.target)


def _conv_im2col_overlap(spec: KernelSpec, x: te.Tensor, w: te.Tensor, b, out_shape, out_dtype: str, tile):
    """``xp[n, c, phase, row, j]`` = the padded input at (row, j * sw + phase) (one copy per phase
    of the width stride, as the direct convolution makes), then ``cols[n, (c, ky, kx), (oy, ox)]``
    = ``xp[n, c, (kx*dw) % sw, oy*sh + ky*dh, ox + (kx*dw) // sw]`` (contiguous runs of a row's
    output columns) and ``out = W[oc, c*kh*kw] @ cols`` by ``gemm_overlap_last``."""
    n, c = _ints(x.shape[:2])
    oc = int(w.shape[0])
    kh, kw = _ints(w.shape[2:])
    oh, ow = _ints(spec.outputs[0].shape)[2:]
    sh, sw = _ints(spec.attrs["strides"])
    dh, dw = _ints(spec.attrs["dilations"])
    k, hw = c * kh * kw, oh * ow
    prob = conv_problem(spec, x, w)
    rows = (oh - 1) * sh + (kh - 1) * dh + 1
    jext = ow + ((kw - 1) * dw) // sw
    xp = te.compute((n, c, sw, rows, jext), lambda bi, cc, ph, r, j: prob.vfun(bi, cc, [r, j * sw + ph]), name="xp")
    cols = te.compute((n, c, kh, kw, oh, ow), lambda bi, cc, ky, kx, oy, ox: xp[
        bi, cc, (kx * dw) % sw, oy * sh + ky * dh, ox + (kx * dw) // sw], name="cols")
    w2 = te.placeholder((oc, k), w.dtype, name="w")
    res = _residual(spec, flat=True)
    epi = _bias_epilogue(b, out_dtype, *_act_bounds(spec), res=res)

    def b_fn(bi, kk, j):
        return cols[bi, kk // (kh * kw), (kk // kw) % kh, kk % kw, j // ow, j % ow]
    out, sched = _ns.gemm_overlap_last(n, oc, hw, k, w2, b_fn, "float32", tile,
                                       lambda acc, bi, mm, j: epi(acc, bi, mm, [j]))

    def schedule(sch, spec_):
        sched(sch, spec_)
        par = n * oc * hw * k >= _ns.parallel_min_macs("float32") and c > 1
        for name in ("xp", "cols"):
            loops = sch.get_loops(sch.get_sblock(name))
            # a row's run along the innermost loop (LLVM vectorizes it); in parallel over
            # channels when the GEMM is
            sch.vectorize(loops[-1])
            if par:
                sch.parallel(sch.fuse(loops[0], loops[1]) if n > 1 else loops[1])
    ins = [x, w2] + ([b] if b is not None else []) + ([res] if res is not None else [])
    func = scheduled(spec, ins, [out], schedule)
    return _param_shapes(func, {1: _ints(w.shape)}, ins, res, out_shape)


# a float32 stride-1 depthwise convolution whose output keeps the input's size and whose rows are
# too short for the vector width (DS-CNN's 25x5, rows of 5 in 8-lane vectors) runs over each
# channel's flattened pixels (``_conv_flat_depthwise``; False: the one-channel row tile)
FLAT_DEPTHWISE = True


def _flat_depthwise_plan(spec: KernelSpec, x: te.Tensor, w: te.Tensor) -> int | None:
    """The vector width of the flattened-pixel form of this depthwise conv, or None.

    Taken when: float32 NCHW, one input and one output channel per group, stride and dilation 1,
    padding that keeps the image size (so input and output pixels share flat indices), rows of at
    most half the native vector width (of 8 lanes or more), at least one whole vector of pixels
    and at most ``max_accumulators`` vectors of them (the channel's accumulators stay in
    registers)."""
    if not FLAT_DEPTHWISE or "conv" in _ns.TILE_OVERRIDE:
        return None
    if str(x.dtype) != "float32" or len(x.shape) != 4:
        return None
    n, c, ih, iw = _ints(x.shape)
    oc, icg, kh, kw = _ints(w.shape)
    if int(spec.attrs.get("group", 1)) != c or oc != c or icg != 1 or c == 1:
        return None
    if any(v != 1 for v in _ints(spec.attrs["strides"])) or any(v != 1 for v in _ints(spec.attrs["dilations"])):
        return None
    pt, pl, pb, pr = _ints(spec.attrs["pads"])
    if kh * kw == 1 or pt + pb != kh - 1 or pl + pr != kw - 1 or _ints(spec.outputs[0].shape)[2:] != (ih, iw):
        return None
    lanes = _lanes(spec, "float32")
    hw = ih * iw
    if lanes < 8 or 2 * iw > lanes or hw < lanes or -(-hw // lanes) > _ns.max_accumulators(spec.target, "float32",
                                                                                           lanes):
        return None
    return lanes


def _conv_flat_depthwise(spec: KernelSpec, x: te.Tensor, w: te.Tensor, b, out_shape, out_dtype: str, L: int):
    """Depthwise conv over a channel's flattened pixels q = row * W + col (input and output share
    them). First a copy ``xf`` of every channel's pixels between zero margins (the rows above and
    below the image); then per channel ``nv`` accumulator vectors of ``L`` consecutive pixels, the last one
    overlapping the one before it (``gemm_overlap_last``'s device, so that 125 pixels take 8 vectors
    of 16 with 98 % of the lanes used, where rows of 5 used 5 of 8). Tap (ky, kx) of pixel q reads
    ``xf[q + ky * W + kx]``; a tap that would cross the left or right edge of the row is zeroed by
    a select on the pixel's column. The write-back is the epilogue (bias, clamp) of each pixel from
    the vector that owns it."""
    n, c, ih, iw = _ints(x.shape)
    kh, kw = _ints(w.shape[2:])
    pt, pl, pb, pr = _ints(spec.attrs["pads"])
    hw = ih * iw
    nv = -(-hw // L)
    front = pt * iw + pl
    flen = front + hw + pb * iw + pr
    x3 = te.placeholder((n, c, hw), x.dtype, name="x")
    res = _residual(spec, flat=True)
    epi = _bias_epilogue(b, out_dtype, *_act_bounds(spec), res=res)
    xf = te.compute((n, c, flen), lambda bi, cc, j: tir.if_then_else(
        tir.all(j >= front, j < front + hw), x3[bi, cc, tir.max(tir.min(j - front, hw - 1), 0)],
        tir.const(0.0, "float32")), name="xf")

    def base(v):
        return tir.min(v * L, hw - L)
    # a kernel axis of one tap gets no reduction loop (TVM drops unit loops)
    ry = te.reduce_axis((0, kh), name="ry") if kh > 1 else tir.const(0, "int32")
    rx = te.reduce_axis((0, kw), name="rx") if kw > 1 else tir.const(0, "int32")
    red = [a for a, k_ in ((ry, kh), (rx, kw)) if k_ > 1]

    def acc_f(bi, cc, v, l):
        q = base(v) + l
        val = xf[bi, cc, q + ry * iw + rx]
        col = tir.floormod(q, iw) + rx - pl
        # Select, not if_then_else: a plain load and a blend (if_then_else's guarded load became
        # lane-by-lane loads)
        val = tir.Select(tir.all(col >= 0, col < iw), val, tir.const(0.0, "float32"))
        return te.sum(val * w[cc, 0, ry, rx], axis=red)
    acc = te.compute((n, c, nv, L), acc_f, name="acc")
    last = (nv - 1) * L

    def out_f(bi, cc, j):
        v = tir.min(j // L, nv - 1)
        return epi(acc[bi, cc, v, j - base(v)], bi, cc, [j])
    out = te.compute((n, c, hw), out_f, name="out")

    def schedule(sch, _spec):
        b_acc, b_out, b_xf = sch.get_sblock("acc"), sch.get_sblock("out"), sch.get_sblock("xf")
        bl, cl, jl = sch.get_loops(b_out)
        chan = sch.fuse(bl, cl)
        sch.compute_at(b_acc, chan)
        par = n * c * hw * kh * kw >= _ns.parallel_min_macs("float32")
        if par:
            sch.parallel(chan)
        # the copy runs for all channels before the convolution: under the channel loop, LLVM
        # forwarded its stores to the unaligned tap loads as shuffles (4.3 us against 3.0 for
        # DS-CNN's 64 channels)
        xl_all = sch.get_loops(b_xf)
        if par:
            sch.parallel(sch.fuse(xl_all[0], xl_all[1]))
        a_v, a_l, *a_r = sch.get_loops(b_acc)[1:]
        # taps outside, the channel's vectors inside: one weight broadcast per tap, nv
        # independent FMAs
        sch.reorder(*a_r, a_v, a_l)
        for lp in a_r:
            sch.unroll(lp)
        sch.unroll(a_v)
        sch.vectorize(a_l)
        sch.decompose_reduction(b_acc, a_r[0])
        # the copy: zero margins and the pixels, each one vectorized run
        xl = sch.get_loops(b_xf)[-1]
        parts = [p for p in (front, hw, flen - front - hw) if p > 0]
        loops_x = sch.loop_partition(xl, parts[:-1] + [None]) if len(parts) > 1 else [xl]
        for lp in loops_x:
            if (_extent(sch, lp) or 1) > 1:
                sch.vectorize(lp)
        ol = sch.get_loops(b_out)
        parts_o = sch.loop_partition(ol[-1], [last, None])
        o2, v2 = sch.split(parts_o[0], [None, L])
        sch.unroll(o2)
        sch.vectorize(v2)
        if (_extent(sch, parts_o[1]) or 1) > 1:
            sch.vectorize(parts_o[1])
    return _flat_dense_func(spec, x3, w, b, res, out, schedule, out_shape, {0: _ints(x.shape)})


# a float32 stride-1 dense convolution that keeps the image size, whose rows are longer than a
# vector but not whole vectors, and whose pixels come in blocks of a few vectors that are whole
# rows (28 columns: 7 vectors of 16 = 4 rows) runs over flattened pixels (``_conv_flat_dense``;
# False: the direct convolution). resnet50's 128-channel 3x3 on 28x28: 2.42 -> 2.08 ms (Zen 4, one
# thread, CPU time), where the direct convolution's rows of 28 used 28 of 32 lanes
FLAT_DENSE = True


def _flat_dense_plan(spec: KernelSpec, x: te.Tensor, w: te.Tensor):
    """(lanes, vectors per pixel block, output channels per tile) of ``_conv_flat_dense``, or None.
    Taken on AVX-512 targets for float32, ungrouped, stride and dilation 1, padding that keeps
    the image size, rows of W columns longer than a vector and not whole vectors, whole-row blocks
    of P = lcm(L, W) / L vectors with 3 <= P <= 8 dividing the image, and a channel count allowing
    a tile of 12 to 24 accumulators."""
    if not FLAT_DENSE or "conv" in _ns.TILE_OVERRIDE:
        return None
    if not _flat_dense_eligible(spec, x):
        return None
    n, c, ih, iw = _ints(x.shape)
    oc, _, kh, kw = _ints(w.shape)
    if kh * kw == 1 or any(v != 1 for v in _ints(spec.attrs["strides"]) + _ints(spec.attrs["dilations"])):
        return None
    pt, pl, pb, pr = _ints(spec.attrs["pads"])
    if pt + pb != kh - 1 or pl + pr != kw - 1 or _ints(spec.outputs[0].shape)[2:] != (ih, iw):
        return None
    L = _lanes(spec, "float32")
    if iw <= L or iw % L == 0 or iw == 56:          # short rows / whole vectors / the 56-column row tile
        return None
    P = math.lcm(L, iw) // L
    if not 3 <= P <= 8 or (ih * iw) % (P * L):
        return None
    # output channels per tile: the most that divide oc with at most 24 accumulators, 12 at least
    mr = next((m for m in range(24 // P, 0, -1) if oc % m == 0), 1)
    return (L, P, mr) if mr * P >= 12 else None


# ... and a strided one (stride > 1, no dilation) whose output rows make such blocks, its input
# split into stride phases first (``_conv_flat_dense_strided``; False: the direct convolution).
# resnet50's 128-channel 3x3 stride 2 (56x56 -> 28x28): 2.57 -> 2.25 ms in the model (onnxruntime
# 2.06), where the direct convolution's rows of 28 used 28 of 32 lanes
FLAT_DENSE_STRIDED = True
# its pixel blocks outside the output-channel tiles (a block's phase rows stay in L2 across all
# channel tiles; channel tiles outside re-read all the phases, 1.7 MB for resnet50's n39, per
# tile: 2.5 -> 2.25 ms with cold caches; False: channel tiles outside)
FLAT_DENSE_STRIDED_BLOCK_OUTER = True


def _flat_dense_strided_plan(spec: KernelSpec, x: te.Tensor, w: te.Tensor):
    """(lanes, vectors per block, output channels per tile) of ``_conv_flat_dense_strided``, or
    None: as ``_flat_dense_plan`` for the output's rows, with strides > 1, dilation 1, and
    ``ow * sw >= iw`` (a tap past the output row's edge reads padding)."""
    if not (FLAT_DENSE and FLAT_DENSE_STRIDED) or "conv" in _ns.TILE_OVERRIDE:
        return None
    if not _flat_dense_eligible(spec, x):
        return None
    n, c, ih, iw = _ints(x.shape)
    oc, _, kh, kw = _ints(w.shape)
    st = _ints(spec.attrs["strides"])
    if kh * kw == 1 or all(v == 1 for v in st) or any(v != 1 for v in _ints(spec.attrs["dilations"])):
        return None
    oh, ow = _ints(spec.outputs[0].shape)[2:]
    if ow * st[1] < iw:
        return None
    L = _lanes(spec, "float32")
    if ow <= L or ow % L == 0:
        return None
    P = math.lcm(L, ow) // L
    if not 3 <= P <= 8 or (oh * ow) % (P * L):
        return None
    mr = next((m for m in range(24 // P, 0, -1) if oc % m == 0), 1)
    return (L, P, mr) if mr * P >= 12 else None


def _flat_dense_eligible(spec, x) -> bool:
    """What both flat dense forms need: a float32 NCHW conv without groups, on a target with 32
    vector registers."""
    return (str(x.dtype) == "float32" and len(x.shape) == 4 and int(spec.attrs.get("group", 1)) == 1
            and _ns.vector_registers(spec.target) >= 32)


def _flat_reduce_axes(c: int, kh: int, kw: int):
    """(rc, ry, rx, red) of the flat dense forms: an axis of extent one is the constant 0 and gets
    no reduction loop (TVM drops unit loops); ``red`` the real ones in order."""
    rc, ry, rx = (te.reduce_axis((0, e), name=nm) if e > 1 else tir.const(0, "int32")
                  for e, nm in ((c, "rc"), (kh, "ry"), (kw, "rx")))
    return rc, ry, rx, [a for a, e in ((rc, c), (ry, kh), (rx, kw)) if e > 1]


def _flat_dense_out(acc_f, epi, n: int, oc: int, hw: int, P: int, L: int):
    """The flat dense forms' ``acc`` [n, oc, blocks, P, L] (``acc_f``) and their output [n, oc, hw]
    through the epilogue ``epi``."""
    B = P * L
    acc = te.compute((n, oc, hw // B, P, L), acc_f, name="acc")
    return te.compute((n, oc, hw), lambda bi, o, j: epi(acc[bi, o, j // B, (j % B) // L, j % L], bi, o, [j]),
                      name="out")


def _flat_dense_func(spec, x, w, b, res, out, schedule, out_shape, shapes: dict):
    """The flat dense forms' PrimFunc (inputs x, w, [bias], [residual]) with their parameter shapes."""
    ins = [x, w] + ([b] if b is not None else []) + ([res] if res is not None else [])
    return _param_shapes(scheduled(spec, ins, [out], schedule), shapes, ins, res, out_shape)


def _flat_dense_schedule(sch, macs: int, mr: int, P: int, L: int, red: list, c: int,
                         block_outer: bool = False):
    """The schedule the flat dense forms share (``_conv_flat_dense`` and its strided form): the
    output as (batch, tiles of mr channels, blocks of P vectors of L pixels) fused into one loop
    (``block_outer``: pixel blocks outside the channel tiles), parallel with the flat copy ``xf``
    from the float parallel threshold; under it the accumulator tile: the input channels a loop
    when there are taps, the taps and the mr x P tile unrolled, the lanes vectorized. Returns the
    ``xf`` block (its copy loop is the caller's)."""
    b_acc, b_out, b_xf = sch.get_sblock("acc"), sch.get_sblock("out"), sch.get_sblock("xf")
    bl, ol, jl = sch.get_loops(b_out)
    oo, oi = sch.split(ol, [None, mr])
    jb, jv, jl2 = sch.split(jl, [None, P, L])
    if block_outer:
        sch.reorder(bl, jb, oo, oi, jv, jl2)
        outer = sch.fuse(bl, jb, oo)
    else:
        sch.reorder(bl, oo, jb, oi, jv, jl2)
        outer = sch.fuse(bl, oo, jb)
    sch.compute_at(b_acc, outer)
    if macs >= _ns.parallel_min_macs("float32"):
        sch.parallel(outer)
        xl = sch.get_loops(b_xf)
        sch.parallel(sch.fuse(xl[0], xl[1]))
    loops = sch.get_loops(b_acc)
    at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(outer)))
    # (channels, [the block: one], vectors, lanes, [rc], [ry], [rx]) under the fused loop
    under = loops[at + 1:]
    a_sp, a_l, a_r = under[:-len(red) - 1], under[-len(red) - 1], under[-len(red):]
    sch.reorder(*a_r, *a_sp, a_l)
    for lp in (a_r[1:] if c > 1 else a_r) + list(a_sp):
        sch.unroll(lp)
    sch.vectorize(a_l)
    sch.decompose_reduction(b_acc, a_r[0])
    ol2 = sch.get_loops(b_out)
    sch.unroll(ol2[-3])
    sch.unroll(ol2[-2])
    sch.vectorize(ol2[-1])
    return b_xf


def _conv_flat_dense_strided(spec: KernelSpec, x: te.Tensor, w: te.Tensor, b, out_shape, out_dtype: str, L: int,
                             P: int, mr: int):
    """``_conv_flat_dense`` over the stride phases of the input. Tap (ky, kx) reads input row
    ``oy * sh + ky - pt = (oy + dy) * sh + ry`` (``ry = (ky - pt) mod sh``, ``dy`` the floor
    quotient), and likewise for columns: phase ``(ry, rx)`` at the output's pixel shifted by
    ``(dy, dx)``. Each phase is copied flat with rows of ``ow`` (the output's width), rows
    ``dy_min .. oh - 1 + dy_max`` plus one zero row before and after, so a tap is one unaligned
    vector load at ``q + const``; taps past the row's edge (``ox + dx`` outside the row: the input
    there is padding as ``ow * sw >= iw``) are zeroed by a ``Select`` on the pixel's column."""
    n, c, ih, iw = _ints(x.shape)
    oc = int(w.shape[0])
    kh, kw = _ints(w.shape[2:])
    oh, ow = _ints(spec.outputs[0].shape)[2:]
    sh, sw = _ints(spec.attrs["strides"])
    pt, pl = _ints(spec.attrs["pads"])[:2]
    hw = oh * ow
    B = P * L
    dys = [(ky - pt) // sh for ky in range(kh)]
    imin, imax = min(dys), oh - 1 + max(dys)
    rows = imax - imin + 1 + 2                    # a zero row before and after
    res = _residual(spec, flat=True)
    epi = _bias_epilogue(b, out_dtype, *_act_bounds(spec), res=res)

    def xf_f(bi, cc, ph, f):
        i = tir.floordiv(f, ow) - 1 + imin
        j = tir.floormod(f, ow)
        r = i * sh + tir.floordiv(ph, sw)
        col = j * sw + tir.floormod(ph, sw)
        ok = tir.all(f >= ow, f < (rows - 1) * ow, r >= 0, r < ih, col < iw)
        return tir.if_then_else(ok, x[bi, cc, tir.max(tir.min(r, ih - 1), 0), tir.min(col, iw - 1)],
                                tir.const(0.0, "float32"))
    xf = te.compute((n, c, sh * sw, rows * ow), xf_f, name="xf")
    rc, ry, rx, red = _flat_reduce_axes(c, kh, kw)

    def acc_f(bi, o, blk, v, l):
        q = blk * B + v * L + l
        ty, tx = ry - pt, rx - pl
        ph = tir.floormod(ty, sh) * sw + tir.floormod(tx, sw)
        dy, dx = tir.floordiv(ty, sh), tir.floordiv(tx, sw)
        col = tir.floormod(v * L + l, ow) + dx       # B is whole rows
        val = tir.Select(tir.all(col >= 0, col < ow), xf[bi, rc, ph, q + (dy - imin + 1) * ow + dx],
                         tir.const(0.0, "float32"))
        return te.sum(val * w[o, rc, ry, rx], axis=red)
    out = _flat_dense_out(acc_f, epi, n, oc, hw, P, L)

    def schedule(sch, _spec):
        b_xf = _flat_dense_schedule(sch, n * oc * hw * c * kh * kw, mr, P, L, red, c,
                                    block_outer=FLAT_DENSE_STRIDED_BLOCK_OUTER)
        # the copy by output rows (a strided gather of an input row, vectorized)
        _, xc = sch.split(sch.get_loops(b_xf)[-1], [None, ow])
        sch.vectorize(xc)
    return _flat_dense_func(spec, x, w, b, res, out, schedule, out_shape, {})


def _conv_flat_dense(spec: KernelSpec, x: te.Tensor, w: te.Tensor, b, out_shape, out_dtype: str, L: int, P: int,
                     mr: int):
    """Dense conv over flattened pixels (as ``_conv_flat_depthwise``): every input channel copied
    between zero margins, then register tiles of ``mr`` output channels x one block of ``P``
    vectors of pixels (``P * L`` pixels = whole rows, so the pixel's column, and with it the masks
    of the taps that cross the row's edge, are the same in every block)."""
    n, c, ih, iw = _ints(x.shape)
    oc = int(w.shape[0])
    kh, kw = _ints(w.shape[2:])
    pt, pl, pb, pr = _ints(spec.attrs["pads"])
    hw = ih * iw
    B = P * L
    front = pt * iw + pl
    flen = front + hw + pb * iw + pr
    x3 = te.placeholder((n, c, hw), x.dtype, name="x")
    res = _residual(spec, flat=True)
    epi = _bias_epilogue(b, out_dtype, *_act_bounds(spec), res=res)
    xf = te.compute((n, c, flen), lambda bi, cc, j: tir.if_then_else(
        tir.all(j >= front, j < front + hw), x3[bi, cc, tir.max(tir.min(j - front, hw - 1), 0)],
        tir.const(0.0, "float32")), name="xf")
    rc, ry, rx, red = _flat_reduce_axes(c, kh, kw)

    def acc_f(bi, o, blk, v, l):
        q = blk * B + v * L + l
        col = tir.floormod(v * L + l, iw) + rx - pl       # B is whole rows
        val = tir.Select(tir.all(col >= 0, col < iw), xf[bi, rc, q + ry * iw + rx], tir.const(0.0, "float32"))
        return te.sum(val * w[o, rc, ry, rx], axis=red)
    out = _flat_dense_out(acc_f, epi, n, oc, hw, P, L)

    def schedule(sch, _spec):
        b_xf = _flat_dense_schedule(sch, n * oc * hw * c * kh * kw, mr, P, L, red, c)
        xl = sch.get_loops(b_xf)[-1]
        parts = [v for v in (front, hw, flen - front - hw) if v > 0]
        for lp in (sch.loop_partition(xl, parts[:-1] + [None]) if len(parts) > 1 else [xl]):
            if (_extent(sch, lp) or 1) > 1:
                sch.vectorize(lp)
    return _flat_dense_func(spec, x3, w, b, res, out, schedule, out_shape, {0: _ints(x.shape)})


def _bias_epilogue(b, out_dtype: str, act_min: float | None = None, act_max: float | None = None, res=None):
    """bias add, then the residual ``res[n, oc, *o]`` (an add fused into the convolution: its
    optional fourth input), then (when given) a clamp to [act_min, act_max] (a relu or clip fused
    into the convolution: attrs ``act_min`` / ``act_max``, absent by default), then the output
    cast."""
    def epi(acc, n, oc, o):
        ad = dtype_of(acc)
        if b is not None:
            acc = acc + cast(b[oc], ad)
        if res is not None:
            acc = acc + cast(res[(n, oc, *o)], ad)
        if act_min is not None:
            acc = tir.max(acc, tir.const(float(act_min), ad))
        if act_max is not None:
            acc = tir.min(acc, tir.const(float(act_max), ad))
        return cast(acc, out_dtype)
    return epi


def _act_bounds(spec: KernelSpec) -> tuple[float | None, float | None]:
    lo, hi = spec.attrs.get("act_min"), spec.attrs.get("act_max")
    return (None if lo is None else float(lo)), (None if hi is None else float(hi))


@kernel("conv_transpose")
def conv_transpose(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    w = placeholder(spec, 1, "w")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    b = placeholder(spec, 2, "bias") if has_bias else None
    out_shape, out_dtype = _out(spec)
    n, c, *in_sp = _ints(x.shape)
    ks = _ints(w.shape[2:])
    r = len(ks)
    groups = int(spec.attrs.get("group", 1))
    ocg = int(w.shape[1])
    oc = ocg * groups
    icg = c // groups
    st = _ints(spec.attrs["strides"])
    dil = _ints(spec.attrs["dilations"])
    pads = _ints(spec.attrs["pads"])
    dtype = str(x.dtype)
    # virtual input: x with (stride - 1) zeros between elements, shifted by P = d*(k-1) - pad_begin
    shift = [dil[i] * (ks[i] - 1) - pads[i] for i in range(r)]

    def vfun(nn, cc, v):
        conds, src = [], []
        for i in range(r):
            rel = v[i] - shift[i]
            conds.append(rel >= 0)
            if st[i] > 1:
                conds.append(tir.floormod(rel, st[i]) == 0)
                s_idx = tir.floordiv(rel, st[i])
            else:
                s_idx = rel
            conds.append(s_idx < in_sp[i])
            src.append(s_idx)
        # clamp the index so that the (unselected) load stays in bounds
        safe = [tir.max(tir.min(s, in_sp[i] - 1), 0) for i, s in enumerate(src)]
        return tir.if_then_else(tir.all(*conds), x[(nn, cc, *safe)], _zero(dtype))

    def wfun(o, ic, t):
        g = o // ocg
        return w[(g * icg + ic, o % ocg, *[ks[i] - 1 - t[i] for i in range(r)])]

    prob = ConvProblem(n=n, c=c, oc=oc, groups=groups, out=tuple(out_shape[2:]), kernel=ks,
                       strides=(1,) * r, dilations=dil, in_shape=tuple(in_sp), vfun=vfun, wfun=wfun,
                       direct=None, dtype=dtype)
    out, sched = conv_direct(prob, spec.target, _bias_epilogue(b, out_dtype), out_dtype)
    ins = [x, w] + ([b] if b is not None else [])
    return scheduled(spec, ins, [out], sched)


# -- pooling --------------------------------------------------------------------------------------
def _pool(spec: KernelSpec, reducer: str, epilogue_factory):
    x = placeholder(spec, 0, "x")
    out_shape, out_dtype = _out(spec)
    n, c, *in_sp = _ints(x.shape)
    r = len(in_sp)
    ks = _ints(spec.attrs["kernel"])
    strides = _ints(spec.attrs["strides"])
    dil = _ints(spec.attrs.get("dilations") or (1,) * r)
    pads = _ints(spec.attrs["pads"])
    pb = pads[:r]
    dtype = str(x.dtype)
    pad_value = lowest_value(dtype) if reducer == "max" else _zero(dtype)

    def vfun(nn, cc, v):
        src = [v[i] - pb[i] for i in range(r)]
        conds = []
        for i in range(r):
            if pb[i] > 0:
                conds.append(src[i] >= 0)
            conds.append(src[i] < in_sp[i])
        return tir.if_then_else(tir.all(*conds), x[(nn, cc, *src)], pad_value)

    direct = None
    if not any(pads):
        def direct(nn, cc, v):
            return x[(nn, cc, *v)]

    prob = ConvProblem(n=n, c=c, oc=c, groups=c, out=tuple(out_shape[2:]), kernel=ks, strides=strides,
                       dilations=dil, in_shape=tuple(in_sp), vfun=vfun, wfun=None, direct=direct, dtype=dtype,
                       reducer=reducer)
    epi = epilogue_factory(in_sp, ks, strides, pads, dil, out_dtype)
    out, sched = conv_direct(prob, spec.target, epi, out_dtype)
    return scheduled(spec, [x], [out], sched)


# a float32 2-D max pool with a width stride > 1 and no dilation whose output rows are whole
# vectors of 16, 8 or 4 lanes runs separably (``_max_pool_separable``): per output row the
# vertical max of its input rows (contiguous vectors), then the horizontal max over that row
# (False: the direct form, whose per-phase copies of a strided input were scalar loops).
# resnet50's 3x3 stride-2 pool over 64 x 112 x 112: 333 -> 95 us (kernel alone, warm caches)
SEPARABLE_MAX_POOL = True


def _separable_max_pool_lanes(spec: KernelSpec, x: te.Tensor) -> int | None:
    if not SEPARABLE_MAX_POOL or str(x.dtype) != "float32" or len(x.shape) != 4:
        return None
    if any(d != 1 for d in _ints(spec.attrs.get("dilations") or (1, 1))):
        return None
    if _ints(spec.attrs["strides"])[1] < 2:
        return None
    ow = _ints(spec.outputs[0].shape)[3]
    top = _lanes(spec, "float32")
    return next((lanes for lanes in (16, 8, 4) if lanes <= top and ow % lanes == 0), None)


def _max_pool_separable(spec: KernelSpec, x: te.Tensor, lanes: int):
    """``v[n, c, oy, j]`` = max over the kernel's rows of the input column ``j - pad_left`` (the
    lowest value outside), for the ``(ow - 1) * sw + kw`` columns an output row reads, computed
    under the output row; then ``out[n, c, oy, ox] = max_kx v[n, c, oy, ox * sw + kx]``."""
    n, c, ih, iw = _ints(x.shape)
    out_shape, out_dtype = _out(spec)
    oh, ow = out_shape[2:]
    kh, kw = _ints(spec.attrs["kernel"])
    sh, sw = _ints(spec.attrs["strides"])
    pt, pl = _ints(spec.attrs["pads"])[:2]
    low = lowest_value("float32")
    vw = (ow - 1) * sw + kw

    def v_f(bi, cc, oy, j):
        col = j - pl
        best = None
        for ky in range(kh):
            r = oy * sh + ky - pt
            val = tir.if_then_else(tir.all(r >= 0, r < ih, col >= 0, col < iw),
                                   x[bi, cc, tir.max(tir.min(r, ih - 1), 0), tir.max(tir.min(col, iw - 1), 0)], low)
            best = val if best is None else tir.max(best, val)
        return best
    v = te.compute((n, c, oh, vw), v_f, name="v")

    def out_f(bi, cc, oy, ox):
        best = None
        for kx in range(kw):
            val = v[bi, cc, oy, ox * sw + kx]
            best = val if best is None else tir.max(best, val)
        return cast(best, out_dtype)
    out = te.compute((n, c, oh, ow), out_f, name="out")

    def schedule(sch, _spec):
        b_out, b_v = sch.get_sblock("out"), sch.get_sblock("v")
        bl, cl, yl, xl = sch.get_loops(b_out)
        sch.compute_at(b_v, yl)
        sch.vectorize(sch.get_loops(b_v)[-1])
        _, xi = sch.split(xl, [None, lanes])
        sch.vectorize(xi)
        if n * c * oh * ow * kh * kw >= _ns.parallel_min_macs("float32"):
            sch.parallel(sch.fuse(bl, cl))
    return scheduled(spec, [x], [out], schedule)


@kernel("max_pool")
def max_pool(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    lanes = _separable_max_pool_lanes(spec, x)
    if lanes is not None:
        return _max_pool_separable(spec, x, lanes)

    def factory(in_sp, ks, strides, pads, dil, out_dtype):
        return lambda acc, n, c, o: cast(acc, out_dtype)
    return _pool(spec, "max", factory)


def _taps_inside(o, size: int, k: int, s: int, p: int, d: int):
    """Number of taps t < k of the window at output position ``o`` with 0 <= o*s - p + t*d < size."""
    lo = tir.max(tir.floordiv(p - o * s + d - 1, d), 0)
    hi = tir.min(tir.floordiv(size - 1 + p - o * s, d), k - 1)
    return tir.max(hi - lo + 1, 0)


@kernel("avg_pool")
def avg_pool(spec: KernelSpec):
    include_pad = bool(int(spec.attrs.get("count_include_pad", 0)))

    def factory(in_sp, ks, strides, pads, dil, out_dtype):
        r = len(ks)

        def epi(acc, n, c, o):
            ad = dtype_of(acc)
            if include_pad:
                div = tir.const(float(math.prod(ks)), ad)
            else:
                cnt = None
                for i in range(r):
                    ci = _taps_inside(o[i], in_sp[i], ks[i], strides[i], pads[i], dil[i])
                    cnt = ci if cnt is None else cnt * ci
                div = tir.max(cnt, 1).astype(ad)
            return cast(acc / div, out_dtype)
        return epi
    return _pool(spec, "sum", factory)


def _global_pool(spec: KernelSpec, reducer: str):
    """Per (n, c) row of hw = prod(spatial) elements (the input seen as [n, c, hw]): ``L`` vector
    partial results over the first hw - hw % L elements, then the hw % L left (DS-CNN's 25x5
    rows: 125 elements, a scalar chain of dependent adds without the split)."""
    xin = placeholder(spec, 0, "x")
    out_shape, out_dtype = _out(spec)
    n, c, *sp = _ints(xin.shape)
    hw = math.prod(sp)
    x = te.placeholder((n, c, hw), xin.dtype, name="x")
    dtype = str(x.dtype)
    is_max = reducer == "max"
    ad = dtype if is_max else acc_dtype(dtype)
    lanes = _lanes(spec, ad)
    widths = [v for v in (lanes, lanes // 2, lanes // 4, 2) if v >= 2 and hw >= 2 * v]
    L = next((v for v in widths if hw % v == 0), widths[0] if widths else 1)
    main, rem = hw - hw % L, hw % L

    def at(nn, cc, flat):
        return cast(x[nn, cc, flat], ad)

    def red(body, axis):
        return max_reduce(body, axis=axis) if is_max else te.sum(body, axis=axis)

    ko = te.reduce_axis((0, main // L), name="ko")
    part = te.compute((n, c, L), lambda nn, cc, l: red(at(nn, cc, ko * L + l), ko), name="part")
    rl = te.reduce_axis((0, L), name="rl")
    tot = te.compute((n, c), lambda nn, cc: red(part[nn, cc, rl], rl), name="tot")
    tail = None
    if rem:
        rt = te.reduce_axis((0, rem), name="rt")
        tail = te.compute((n, c), lambda nn, cc: red(at(nn, cc, main + rt), rt), name="tail")

    def out_f(nn, cc, *z):
        v = tot[nn, cc]
        if tail is not None:
            v = tir.max(v, tail[nn, cc]) if is_max else v + tail[nn, cc]
        if not is_max:
            v = v / tir.const(float(hw), ad)
        return cast(v, out_dtype)
    out = te.compute(tuple(out_shape), out_f, name="out")

    def schedule(sch, _spec):
        b_part, b_tot, b_out = sch.get_sblock("part"), sch.get_sblock("tot"), sch.get_sblock("out")
        ol = sch.get_loops(b_out)
        row = sch.fuse(ol[0], ol[1])
        if tail is not None:
            sch.compute_at(sch.get_sblock("tail"), row)
        sch.compute_at(b_tot, row)
        sch.compute_at(b_part, row)
        if L > 1:
            pl = sch.get_loops(b_part)
            sch.reorder(pl[-1], pl[-2])        # (ko, l): vector partial results over l
            sch.vectorize(sch.get_loops(b_part)[-1])
        if n * c * hw >= (1 << 16):
            sch.parallel(row)
        if L > 1:
            sch.decompose_reduction(b_part, sch.get_loops(b_part)[-2])
    return with_param_shapes(scheduled(spec, [x], [out], schedule), {0: _ints(xin.shape)})


@kernel("global_avg_pool")
def global_avg_pool(spec: KernelSpec):
    return _global_pool(spec, "sum")


@kernel("global_max_pool")
def global_max_pool(spec: KernelSpec):
    return _global_pool(spec, "max")


# -- row-wise statistics (softmax, normalizations) -------------------------------------------------
def _unflatten(flat, dims: Sequence[int]) -> list:
    """Multi-index of ``flat`` in a row-major array of shape ``dims``."""
    if not dims:
        return []
    idx, rem = [], flat
    for i in range(len(dims) - 1, 0, -1):
        idx.append(tir.floormod(rem, dims[i]))
        rem = tir.floordiv(rem, dims[i])
    idx.append(rem)
    return idx[::-1]


def _flatten(idx: Sequence, dims: Sequence[int]):
    flat = tir.const(0, "int32")
    for i, d in zip(idx, dims):
        flat = flat * d + i
    return flat


class _AxisView:
    """``x`` seen as [O, R, I]: O = prod(shape[:a0]), R = prod(shape[a0:a1]) (reduced), I = the rest."""

    def __init__(self, x: te.Tensor, a0: int, a1: int):
        self.x = x
        self.shape = _ints(x.shape)
        self.od, self.rd, self.id = self.shape[:a0], self.shape[a0:a1], self.shape[a1:]
        self.O, self.R, self.I = math.prod(self.od), math.prod(self.rd), math.prod(self.id)
        self.a0, self.a1 = a0, a1

    def at(self, o, r, i):
        return self.x[tuple(_unflatten(o, self.od) + _unflatten(r, self.rd) + _unflatten(i, self.id))]

    def split(self, idx):
        """(o, i) of a full index into x."""
        return _flatten(idx[:self.a0], self.od), _flatten(idx[self.a1:], self.id)


def _row_reduce(view: _AxisView, fn, kind: str, name: str, lanes: int) -> tuple[te.Tensor, list]:
    """``stat[o, i] = reduce_r fn(o, r, i)`` (kind "sum" or "max"). When I == 1 and the row splits
    into vectors, the reduction keeps ``lanes`` partial results per row (vectorizable) and adds
    them at the end. Returns (stat tensor [O, I], [(block name, role)]) for ``_row_schedule``."""
    red = max_reduce if kind == "max" else te.sum
    R = view.R
    L = next((v for v in (lanes, lanes // 2) if v >= 2 and R % v == 0 and R >= 2 * v), 1) if view.I == 1 else 1
    if L > 1:
        ko = te.reduce_axis((0, R // L), name=f"{name}_ko")
        part = te.compute((view.O, L), lambda o, l: red(fn(o, ko * L + l, 0), axis=ko), name=f"{name}_part")
        rl = te.reduce_axis((0, L), name=f"{name}_rl")
        stat = te.compute((view.O, 1), lambda o, i: red(part[o, rl], axis=rl), name=name)
        return stat, [(f"{name}_part", "part"), (name, "final")]
    rr = te.reduce_axis((0, R), name=f"{name}_r")
    stat = te.compute((view.O, view.I), lambda o, i: red(fn(o, rr, i), axis=rr), name=name)
    return stat, [(name, "wide" if view.I > 1 else "final")]


def _vectorize_fused(sch, loops: list, lanes: int) -> None:
    """The loops fused into one, split by ``lanes`` (or lanes / 2) where that divides its extent,
    the inner part vectorized."""
    f = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    ext = _extent(sch, f) or 1
    vec = next((v for v in (lanes, lanes // 2) if v >= 2 and ext % v == 0), 0)
    if vec:
        _, v = sch.split(f, [None, vec])
        sch.vectorize(v)


def _row_schedule(stat_blocks: list, view: _AxisView, lanes: int, out_name: str = "out"):
    """Schedule: the output's leading O loops fused (parallel when big), every statistic computed
    under that loop (so it is a per-row scalar or a vector of I), the output's inner loops fused
    and vectorized when they divide into vectors."""
    def schedule(sch, _spec):
        b_out = sch.get_sblock(out_name)
        loops = sch.get_loops(b_out)
        a0 = view.a0
        row = None
        if a0 >= 1:
            row = sch.fuse(*loops[:a0]) if a0 > 1 else loops[0]
            for name, _ in reversed(stat_blocks):
                sch.compute_at(sch.get_sblock(name), row)
        n_outer = 1 if row is not None else 0
        inner = sch.get_loops(b_out)[n_outer:]
        if inner:
            _vectorize_fused(sch, inner, lanes)
        if row is not None and view.O * view.R * view.I >= (1 << 16) and view.O >= 2:
            sch.parallel(row)
        for name, role in stat_blocks:
            blk = sch.get_sblock(name)
            own = sch.get_loops(blk)[n_outer:]
            if role == "elem":                            # a row of elements: vector along it
                _vectorize_fused(sch, own, lanes)
            elif role == "part" and len(own) == 2:          # (l, ko) -> (ko, l), vector over l
                sch.reorder(own[1], own[0])
                sch.vectorize(own[0])
                sch.decompose_reduction(blk, own[1])
            elif role == "wide" and len(own) == 2:        # (i, r) -> (r, i), vector over i
                ext = _extent(sch, own[0]) or 1
                sch.reorder(own[1], own[0])
                vec = next((v for v in (lanes, lanes // 2) if v >= 2 and ext % v == 0), 0)
                if vec:
                    _, iv = sch.split(own[0], [None, vec])
                    sch.vectorize(iv)
                sch.decompose_reduction(blk, own[1])
    return schedule


# softmax: exp once per element into a row buffer, then a multiply by 1 / sum (False: exp in the
# sum and again in the output, a division per element; for measurements)
SOFTMAX_ONE_EXP = True


def _softmax(spec: KernelSpec, log: bool):
    x = placeholder(spec, 0, "x")
    shape, out_dtype = _out(spec)
    axis = int(spec.attrs["axis"])
    ad = acc_dtype(str(x.dtype))
    view = _AxisView(x, axis, axis + 1)
    lanes = _lanes(spec, ad)
    xf = lambda o, r, i: cast(view.at(o, r, i), ad)  # noqa: E731
    mx, mx_blocks = _row_reduce(view, xf, "max", "rmax", lanes)
    exp = fast_exp if ad == "float32" else tir.exp
    if SOFTMAX_ONE_EXP and not log and view.I == 1:
        # rows along the last axes: e = exp(x - max) once per element (a row buffer), the sum of e,
        # then e * (1 / sum) (one division per row). Before: exp twice per element and a division
        # per element (MiniLM's 12 x 128 x 128 softmax 167 -> see docs/performance.md, session 10)
        e = te.compute(shape, lambda *idx: exp(cast(x[idx], ad) - mx[view.split(idx)[0], 0]), name="e")
        ev = _AxisView(e, axis, axis + 1)
        se, se_blocks = _row_reduce(ev, lambda o, r, i: ev.at(o, r, i), "sum", "rsum", lanes)
        one = tir.const(1.0, ad)
        out = te.compute(shape, lambda *idx: cast(e[idx] * (one / se[view.split(idx)[0], 0]), out_dtype), name="out")
        return scheduled(spec, [x], [out], _row_schedule(mx_blocks + [("e", "elem")] + se_blocks, view, lanes))
    se, se_blocks = _row_reduce(view, lambda o, r, i: exp(xf(o, r, i) - mx[o, i if view.I > 1 else 0]), "sum",
                                "rsum", lanes)

    def out_f(*idx):
        o, i = view.split(idx)
        ii = i if view.I > 1 else 0
        v = cast(x[idx], ad) - mx[o, ii]
        v = v - tir.log(se[o, ii]) if log else exp(v) / se[o, ii]
        return cast(v, out_dtype)
    out = te.compute(shape, out_f, name="out")
    return scheduled(spec, [x], [out], _row_schedule(mx_blocks + se_blocks, view, lanes))


@kernel("softmax")
def softmax(spec: KernelSpec):
    return _softmax(spec, log=False)


@kernel("log_softmax")
def log_softmax(spec: KernelSpec):
    return _softmax(spec, log=True)


def _normalize(spec: KernelSpec, view: _AxisView, x: te.Tensor, eps: float, affine) -> te.Tensor:
    """(x - mean) / sqrt(var + eps) then ``affine(value, idx)``, statistics over the R axis."""
    shape, out_dtype = _out(spec)
    ad = acc_dtype(str(x.dtype))
    lanes = _lanes(spec, ad)
    xf = lambda o, r, i: cast(view.at(o, r, i), ad)  # noqa: E731
    s1, b1 = _row_reduce(view, xf, "sum", "rsum", lanes)
    # mean = sum / R, computed like numpy's mean: the float32 sum divided by R
    rdiv = tir.const(float(view.R), ad)
    s2, b2 = _row_reduce(view, lambda o, r, i: _sq(xf(o, r, i) - s1[o, 0] / rdiv), "sum", "rsq", lanes)

    def out_f(*idx):
        o, _ = view.split(idx)
        mean = s1[o, 0] / rdiv
        var = s2[o, 0] / rdiv
        v = (cast(x[idx], ad) - mean) / tir.sqrt(var + tir.const(eps, ad))
        return cast(affine(v, idx), out_dtype)
    out = te.compute(shape, out_f, name="out")
    return out, _row_schedule(b1 + b2, view, lanes)


def _sq(v):
    return v * v


@kernel("layer_norm")
def layer_norm(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    scale = placeholder(spec, 1, "scale")
    has_bias = len(spec.inputs) > 2 and spec.inputs[2] is not None
    bias = placeholder(spec, 2, "bias") if has_bias else None
    axis = int(spec.attrs["axis"])
    rank = len(x.shape)
    view = _AxisView(x, axis, rank)
    ad = acc_dtype(str(x.dtype))

    def bidx(t: te.Tensor, idx):
        tsh = _ints(t.shape)
        off = rank - len(tsh)
        return tuple(0 if tsh[j] == 1 else idx[off + j] for j in range(len(tsh)))

    def affine(v, idx):
        v = v * cast(scale[bidx(scale, idx)], ad)
        if bias is not None:
            v = v + cast(bias[bidx(bias, idx)], ad)
        return v
    out, sched = _normalize(spec, view, x, float(spec.attrs.get("epsilon", 1e-5)), affine)
    return scheduled(spec, [x, scale] + ([bias] if bias is not None else []), [out], sched)


@kernel("instance_norm")
def instance_norm(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    scale = placeholder(spec, 1, "scale")
    bias = placeholder(spec, 2, "bias")
    view = _AxisView(x, 2, len(x.shape))
    ad = acc_dtype(str(x.dtype))

    def affine(v, idx):
        return v * cast(scale[idx[1]], ad) + cast(bias[idx[1]], ad)
    out, sched = _normalize(spec, view, x, float(spec.attrs.get("epsilon", 1e-5)), affine)
    return scheduled(spec, [x, scale, bias], [out], sched)


@kernel("batch_norm")
def batch_norm(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    scale, bias, mean, var = (placeholder(spec, i, n) for i, n in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
    shape, out_dtype = _out(spec)
    ad = acc_dtype(str(x.dtype))
    eps = tir.const(float(spec.attrs.get("epsilon", 1e-5)), ad)

    def f(*idx):
        c = idx[1]
        inv = cast(scale[c], ad) / tir.sqrt(cast(var[c], ad) + eps)
        return cast((cast(x[idx], ad) - cast(mean[c], ad)) * inv + cast(bias[c], ad), out_dtype)
    out = te.compute(shape, f, name="out")
    return prim_func(spec, [x, scale, bias, mean, var], [out])


@kernel("lrn")
def lrn(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    shape, out_dtype = _out(spec)
    size = int(spec.attrs["size"])
    alpha, beta, bias = (float(spec.attrs[k]) for k in ("alpha", "beta", "bias"))
    ad = acc_dtype(str(x.dtype))
    c = int(x.shape[1])
    lo = (size - 1) // 2
    rc = te.reduce_axis((0, size), name="rc")

    def sq(*idx):
        ch = idx[1] - lo + rc
        v = cast(x[(idx[0], tir.max(tir.min(ch, c - 1), 0), *idx[2:])], ad)
        return te.sum(tir.if_then_else(tir.all(ch >= 0, ch < c), v * v, tir.const(0, ad)), axis=rc)
    ssum = te.compute(shape, sq, name="ssum")

    def f(*idx):
        base = tir.const(bias, ad) + tir.const(alpha / size, ad) * ssum[idx]
        return cast(cast(x[idx], ad) / tir.power(base, tir.const(beta, ad)), out_dtype)
    out = te.compute(shape, f, name="out")

    def schedule(sch, _spec):
        b_out = sch.get_sblock("out")
        loops = sch.get_loops(b_out)
        sch.compute_at(sch.get_sblock("ssum"), loops[-1])
        if math.prod(shape) >= (1 << 15):
            sch.parallel(sch.fuse(*loops[:2]))
    return scheduled(spec, [x], [out], schedule)


# -- depth_to_space / space_to_depth ----------------------------------------------------------------
@kernel("depth_to_space")
def depth_to_space(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    shape, _ = _out(spec)
    b = int(spec.attrs["blocksize"])
    crd = spec.attrs.get("mode", "DCR") == "CRD"
    oc = shape[1]

    def f(n, c, h, w):
        bh, bw = tir.floormod(h, b), tir.floormod(w, b)
        ic = c * b * b + bh * b + bw if crd else (bh * b + bw) * oc + c
        return x[n, ic, tir.floordiv(h, b), tir.floordiv(w, b)]
    out = te.compute(shape, f, name="out")
    return prim_func(spec, [x], [out])


@kernel("space_to_depth")
def space_to_depth(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    shape, _ = _out(spec)
    b = int(spec.attrs["blocksize"])
    crd = spec.attrs.get("mode", "DCR") == "CRD"
    ic_n = int(x.shape[1])

    def f(n, c, h, w):
        if crd:
            ic, blk = tir.floordiv(c, b * b), tir.floormod(c, b * b)
        else:
            blk, ic = tir.floordiv(c, ic_n), tir.floormod(c, ic_n)
        return x[n, ic, h * b + tir.floordiv(blk, b), w * b + tir.floormod(blk, b)]
    out = te.compute(shape, f, name="out")
    return prim_func(spec, [x], [out])


# -- resize -----------------------------------------------------------------------------------------
def _f64(v: float):
    return tir.const(float(v), "float64")


from ...ops._nn_util import NEAREST_TIE_EPS  # noqa: E402


def _f32(v: float):
    return tir.const(float(np.float32(v)), "float32")


def _resize_coord(mode: str, o, n_in: int, n_out: int, scale: float, roi: Sequence[float], axis: int, rank: int):
    """Source coordinate (float32) of output position ``o`` along one axis: the same float32
    operations, in the same order, as ``edgec.ops._nn_util.resize_coords`` (which follows
    onnxruntime), so nearest-neighbour choices at ties are identical."""
    xr = o.astype("float32")
    s, fin, fout = _f32(scale), _f32(n_in), _f32(n_out)
    if mode in ("half_pixel", "pytorch_half_pixel"):
        if mode == "pytorch_half_pixel" and n_out == 1:
            return _f32(0.0)
        return (xr + _f32(0.5)) / s - _f32(0.5)
    if mode == "half_pixel_symmetric":   # the last step in float64, as the reference
        f = np.float32
        adjustment = f(n_out) / (f(scale) * f(n_in))
        offset = (f(n_in) / f(2)) * (f(1) - adjustment)
        return (_f64(float(offset)) + (xr.astype("float64") + _f64(0.5)) / _f64(float(f(scale)))
                - _f64(0.5)).astype("float32")
    if mode == "align_corners":
        return xr * (fin - _f32(1)) / (fout - _f32(1)) if n_out > 1 else _f32(0.0)
    if mode == "asymmetric":
        return xr / s
    if mode == "tf_half_pixel_for_nn":
        return (xr + _f32(0.5)) / s
    if mode == "tf_crop_and_resize":
        f = np.float32
        start, end = f(roi[axis]), f(roi[rank + axis])
        if n_out == 1:
            return _f32(float(np.float32(0.5 * np.float64(start + end) * np.float64(f(n_in) - f(1)))))
        return _f32(float(start * (f(n_in) - f(1)))) + xr * _f32(float(end - start)) * (fin - _f32(1)) / (fout - _f32(1))
    raise ValueError(f"resize: unknown coordinate_transformation_mode {mode!r}")


def _cubic(t, a: float):
    """Keys cubic weights of the taps at offsets -1, 0, 1, 2 for fractional position ``t`` (float64)."""
    A = _f64(a)

    def near(u):
        return ((A + _f64(2)) * u - (A + _f64(3))) * u * u + _f64(1)

    def far(u):
        return ((A * u - _f64(5) * A) * u + _f64(8) * A) * u - _f64(4) * A
    one, two = _f64(1), _f64(2)
    return [far(t + one), near(t), near(one - t), far(two - t)]


def _axis_taps(mode: str, coord, n_in: int, nearest_mode: str, cubic_a: float, exclude_outside: bool):
    """(indices, float64 weights) of the taps of one axis, as ``resize_taps`` computes them."""
    base_f = tir.floor(coord)
    frac = (coord - base_f).astype("float64")
    base = base_f.astype("int32")
    half = _f64(0.5)
    if mode == "nearest":
        # within NEAREST_TIE_EPS of a half is a tie, as in the reference (and onnxruntime)
        tie = tir.abs(frac - half) < _f64(NEAREST_TIE_EPS)
        if nearest_mode == "round_prefer_floor":
            idx = base + tir.Select(tir.all(frac > half, tir.Not(tie)), 1, 0)
        elif nearest_mode == "round_prefer_ceil":
            idx = base + tir.Select(tir.any(frac > half, tie), 1, 0)
        elif nearest_mode == "floor":
            idx = base
        elif nearest_mode == "ceil":
            idx = base + tir.Select(frac > _f64(0), 1, 0)
        else:
            raise ValueError(f"resize: unknown nearest_mode {nearest_mode!r}")
        idxs, wts = [idx], [_f64(1.0)]
    elif mode == "linear":
        idxs, wts = [base, base + 1], [_f64(1) - frac, frac]
    elif mode == "cubic":
        idxs = [base + d for d in (-1, 0, 1, 2)]
        wts = _cubic(frac, cubic_a)
        if exclude_outside:
            wts = [tir.Select(tir.all(i >= 0, i < n_in), w, _f64(0)) for i, w in zip(idxs, wts)]
            tot = wts[0] + wts[1] + wts[2] + wts[3]
            wts = [w / tot for w in wts]
    else:
        raise ValueError(f"resize: unknown mode {mode!r}")
    return [tir.max(tir.min(i, n_in - 1), 0) for i in idxs], wts


@kernel("resize")
def resize(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    shape, out_dtype = _out(spec)
    a = spec.attrs
    mode = a["mode"]
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    nearest_mode = a.get("nearest_mode", "round_prefer_floor")
    scales = tuple(float(v) for v in a["scales"])
    cubic_a = float(a.get("cubic_coeff_a", -0.75))
    exclude = bool(int(a.get("exclude_outside", 0)))
    extrap = float(a.get("extrapolation_value", 0.0))
    roi = tuple(a.get("roi", ()) or ())
    in_shape = _ints(x.shape)
    rank = len(in_shape)
    dtype = str(x.dtype)
    cdt = dtype if mode == "nearest" else acc_dtype(dtype)
    import numpy as np
    from ...ops._nn_util import resize_coords
    # axes whose coordinates are exactly the output positions are copied, as the reference does
    active = []
    for ax in range(rank):
        if ctm != "tf_crop_and_resize" and in_shape[ax] == shape[ax] and np.array_equal(
                resize_coords(ctm, in_shape[ax], shape[ax], scales[ax]), np.arange(shape[ax])):
            continue
        active.append(ax)

    # per-axis tables (computed once per call, not per output element): tap indices, tap
    # weights and, for tf_crop_and_resize, whether the position lies outside the input
    tables = {}
    table_names = []
    def pick(vals, t):
        out = vals[-1]
        for k in range(len(vals) - 2, -1, -1):
            out = tir.Select(t == k, vals[k], out)
        return out

    def axis_tables(ax: int):
        n_in, n_out = in_shape[ax], shape[ax]
        n_taps = {"nearest": 1, "linear": 2, "cubic": 4}[mode]
        coord = te.compute((n_out,), lambda o: _resize_coord(ctm, o, n_in, n_out, scales[ax], roi, ax, rank),
                           name=f"coord{ax}")
        names = [coord.op.name]

        def taps(o):
            return _axis_taps(mode, coord[o], n_in, nearest_mode, cubic_a, exclude)
        idx_t = te.compute((n_out, n_taps), lambda o, t: pick(taps(o)[0], t), name=f"tap_idx{ax}")
        names.append(idx_t.op.name)
        w_t = None
        if mode != "nearest":
            w_t = te.compute((n_out, n_taps), lambda o, t: pick([w.astype(cdt) for w in taps(o)[1]], t),
                             name=f"tap_w{ax}")
            names.append(w_t.op.name)
        out_t = None
        if ctm == "tf_crop_and_resize":
            out_t = te.compute((n_out,), lambda o: tir.Select(
                tir.any(coord[o] < _f64(0), coord[o] > _f64(n_in - 1)), 1, 0), name=f"tap_out{ax}")
            names.append(out_t.op.name)
        return (n_taps, idx_t, w_t, out_t), names

    for ax in active:
        tables[ax], names = axis_tables(ax)
        table_names += names

    def f(*idx):
        total = None
        for combo in _product([range(tables[ax][0]) for ax in active]):
            src = list(idx)
            w = None
            for ax, t in zip(active, combo):
                _, idx_t, w_t, _ = tables[ax]
                src[ax] = idx_t[idx[ax], t]
                if w_t is not None:
                    w = w_t[idx[ax], t] if w is None else w * w_t[idx[ax], t]
            v = cast(x[tuple(src)], cdt)
            term = v if w is None else v * w
            total = term if total is None else total + term
        flags = [tables[ax][3][idx[ax]] for ax in active if tables[ax][3] is not None]
        if flags:
            anyout = flags[0]
            for fl in flags[1:]:
                anyout = tir.max(anyout, fl)
            total = tir.Select(anyout > 0, tir.const(extrap, cdt), total)
        return cast(total, out_dtype)
    out = te.compute(shape, f, name="out")

    def schedule(sch, _spec):
        loops = sch.get_loops(sch.get_sblock("out"))
        n_par = max(1, len(loops) - 1)
        if math.prod(shape) >= (1 << 15):
            sch.parallel(sch.fuse(*loops[:n_par]) if n_par > 1 else loops[0])
    # TIR common-subexpression elimination is quadratic in the size of the (up to 64-term)
    # interpolation expression and gains nothing over LLVM's own: the build skips it
    return scheduled(spec, [x], [out], schedule).with_attr(NO_TIR_CSE_ATTR, True)


def _product(ranges):
    if not ranges:
        yield ()
        return
    for i in ranges[0]:
        for rest in _product(ranges[1:]):
            yield (i,) + rest
