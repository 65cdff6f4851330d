"""The integer global average pool (``qglobal_avg_pool``, edgec/ops/quant.py): one kernel for
what was cast<int32> -> reduce_sum -> requantize (three kernels and two int32 tensors of the
input's size in between: 19.5 us of PP-OCR's 0.40 ms int8 run went to its 10 squeeze-excitation
pools, 0.8 us of DS-CNN's 29 us).

Per (batch, channel) the sum of the channel's ``count`` contiguous bytes (NCHW), then one
requantization of ``sum - count * x_zero_point`` per channel (vectorized over the channels).

On x86 (the VNNI host and AVX2 targets) the sum is ``psadbw`` against zero: each instruction adds
8 groups of 8 unsigned bytes into 64-bit lanes (64 bytes per ``vpsadbw`` zmm on AVX-512BW, 32 on
AVX2), then 16-byte ``psadbw`` steps for the rest of the channel, and the last partial 16 bytes
(when the channel has at least 16) as a 16-byte load ending at the channel's last byte with the
bytes already counted zeroed (a constant lane mask); fewer than 16 bytes: scalar adds. int8 inputs
are flipped to unsigned (x ^ 0x80 = x + 128) and 128 * count is taken off the sum: exact. The
sum is an int32 (count * 255 < 2^31, checked by the op). Elsewhere: the TE reduction, which LLVM
vectorizes.
"""
from __future__ import annotations

import tvm
from tvm import te

from ._nn_sched import cast, scheduled
from .common import PARALLEL_MIN_ELEMS, placeholder
from .quant import _requant_node
from .quant_dw import _flat, _replace_loop
from .quant_isa import target_isa
from .registry import KernelSpec, kernel

tir = tvm.tirx

# the psadbw form per ISA: (bytes per main step, its LLVM intrinsic, int64 lanes it returns)
_SAD = {"vnni": (64, "llvm.x86.avx512.psad.bw.512", 8), "avx2": (32, "llvm.x86.avx2.psad.bw", 4)}
_SAD16 = "llvm.x86.sse2.psad.bw"


def _channel_sum(xf, base, count: int, signed: bool, step: int, intrin: str, lanes: int, accv):
    """TIR: accv[0] + ... + accv[lanes - 1] = the sum of the ``count`` bytes of xf from ``base``
    (as unsigned bytes; int8: x + 128); returns (statements, total expression)."""
    def load(off, n):
        v = tir.BufferLoad(xf, [tir.Ramp(off, 1, n)])
        if signed:
            v = tir.bitwise_xor(v, tir.Broadcast(tir.const(-128, "int8"), n))
        return tir.reinterpret(f"int8x{n}", v)

    def sad(v, n, name, out_lanes):
        return tir.call_llvm_pure_intrin(f"int64x{out_lanes}", name, v, tir.Broadcast(tir.const(0, "int8"), n))

    def add_to(expr, n):
        idx = [tir.Ramp(0, 1, n)]
        return tir.BufferStore(accv, tir.BufferLoad(accv, idx) + expr, idx)
    body = [tir.BufferStore(accv, tir.Broadcast(tir.const(0, "int64"), lanes), [tir.Ramp(0, 1, lanes)])]
    full = count // step
    if full:
        j = tir.Var("j", "int32")
        body.append(tir.For(j, 0, full, tir.ForKind.SERIAL, add_to(sad(load(base + j * step, step), step, intrin,
                                                                           lanes), lanes)))
    done = full * step
    n16 = (count - done) // 16
    for k in range(n16):
        body.append(add_to(sad(load(base + done + 16 * k, 16), 16, _SAD16, 2), 2))
    done += 16 * n16
    rest = count - done
    scalar = None
    if rest and count >= 16:
        # the last 16 bytes of the channel, the 16 - rest already counted set to zero
        v = load(base + count - 16, 16)
        keep = tir.Ramp(0, 1, 16) >= tir.Broadcast(tir.const(16 - rest, "int32"), 16)
        v = tir.Select(keep, v, tir.Broadcast(tir.const(0, "int8"), 16))
        body.append(add_to(sad(v, 16, _SAD16, 2), 2))
    elif rest:
        bias = 128 if signed else 0
        scalar = sum((cast(tir.BufferLoad(xf, [base + done + k]), "int64") + bias for k in range(rest)),
                     tir.const(0, "int64"))
    total = sum((tir.BufferLoad(accv, [k]) for k in range(lanes)), tir.const(0, "int64"))
    if scalar is not None:
        total = total + scalar
    if signed:
        total = total - tir.const(128 * count, "int64")
    return body, total


@kernel("qglobal_avg_pool")
def qglobal_avg_pool(spec: KernelSpec):
    x = placeholder(spec, 0, "x")
    a = spec.attrs
    shape = tuple(int(d) for d in x.shape)
    n, c, sp = shape[0], shape[1], shape[2:]
    count = 1
    for d in sp:
        count *= d
    rs = [te.reduce_axis((0, d), name=f"r{i}") for i, d in enumerate(sp)]
    acc = te.compute((n, c), lambda nn, cc: te.sum(cast(x[(nn, cc) + tuple(rs)], "int32"), axis=rs), name="acc")
    zc = tir.const(count * int(a["x_zero_point"]), "int32")
    out = te.compute(tuple(int(d) for d in spec.outputs[0].shape),
                     lambda nn, cc, *_: _requant_node(acc[nn, cc] - zc, a), name="out")
    isa = target_isa(spec.target)
    sad = _SAD.get(isa.name) if isa is not None else None
    parallel = n * c * count >= 8 * PARALLEL_MIN_ELEMS and n * c >= 2

    def schedule(sch, spec) -> None:
        b_acc, b_out = sch.get_sblock("acc"), sch.get_sblock("out")
        ol = sch.get_loops(b_out)
        # the requantization over the channels as vectors (int64 lanes)
        sch.vectorize(sch.fuse(*ol[1:]) if len(ol) > 2 else ol[1])
        al = sch.get_loops(b_acc)
        top = sch.fuse(al[0], al[1])
        if parallel:
            sch.parallel(top)
        if sad is None:
            if count >= 64:
                # the channel's bytes as int32 vectors summed lane-wise, then across the lanes
                r = sch.fuse(*sch.get_loops(b_acc)[1:]) if len(sp) > 1 else sch.get_loops(b_acc)[1]
                _, ri = sch.split(r, [None, 16])
                rf = sch.rfactor(ri, 1)
                sch.vectorize(sch.get_loops(rf)[-1])
            return
        step, intrin, lanes = sad
        x_buf = sch.get(b_acc).reads[0].source
        acc_buf = sch.get(b_acc).writes[0].source
        tv = sch.get(top).loop_var
        xf, decl = _flat(x_buf, "x_flat")
        accv = tir.decl_buffer((lanes,), "int64", name="sadacc", scope="local")
        stmts, total = _channel_sum(xf, tv * count, count, str(x.dtype) == "int8", step, intrin, lanes, accv)
        nn, cc = tv // c, tv % c
        stmts.append(tir.BufferStore(acc_buf, cast(total, "int32"), [nn, cc]))
        body = tir.SeqStmt([decl, tir.SeqStmt(stmts)])
        one = tvm.ir.Range.from_min_extent
        _replace_loop(sch, sch.get_loops(b_acc)[1], body, [(x_buf, (nn, cc))], [(acc_buf, [one(nn, 1), one(cc, 1)])],
                      "sad_sum", alloc=[accv])

    return scheduled(spec, [x], [out], schedule)


__all__ = ["qglobal_avg_pool"]
