"""Converters for ONNX matrix ops: MatMul, Gemm.

Gemm becomes ``dense`` when B is a constant: transB and alpha are folded into the weight
w[N, K], and beta * C becomes the bias when C is a constant that broadcasts to [N]. Other
forms become matmul (+ transpose for transA/transB) followed by mul/add.
"""
from __future__ import annotations

import numpy as np

from ..registry import ConvertContext, converter


@converter("MatMul", since=1)
def matmul(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.emit1("matmul", [ctx.input(0), ctx.input(1)]))


def _scalar(ctx: ConvertContext, value: float, dtype: str) -> str:
    return ctx.add_const(np.asarray(value, dtype=dtype))


@converter("Gemm", since=7)
def gemm(ctx: ConvertContext) -> None:
    ctx.check_attrs({"alpha": None, "beta": None, "transA": None, "transB": None})
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    trans_a = int(ctx.attr("transA", 0))
    trans_b = int(ctx.attr("transB", 0))
    a, b = ctx.value(0), ctx.value(1)
    if len(a.shape) != 2 or len(b.shape) != 2:
        ctx.unsupported(f"A {list(a.shape)} and B {list(b.shape)} must be 2-D")
    if a.dtype != b.dtype:
        ctx.unsupported(f"A and B dtypes differ ({a.dtype}, {b.dtype})")
    dt = a.dtype
    x = ctx.input(0)
    if trans_a:
        x = ctx.emit1("transpose", [x], {"perm": (1, 0)})
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]

    c = ctx.value(2) if ctx.has_input(2) else None
    if c is not None and c.dtype != dt:
        ctx.unsupported(f"C dtype {c.dtype} differs from A's {dt}")
    if c is not None and beta == 0.0:
        c = None      # beta * C contributes nothing (ONNX: C is ignored when beta is 0)
    if c is not None:
        try:
            ok = tuple(np.broadcast_shapes(tuple(c.shape), (m, n))) == (m, n)
        except ValueError:
            ok = False
        if not ok:
            ctx.unsupported(f"C {list(c.shape)} does not broadcast to the output [{m}, {n}]")
    bias_vector = c is not None and c.const is not None and len(c.shape) <= 2 and \
        (len(c.shape) < 2 or c.shape[0] == 1)

    if b.const is not None:
        w = b.const if trans_b else b.const.T
        if alpha != 1.0:
            w = w * np.asarray(alpha, dtype=dt)
        w_name = ctx.add_const(np.ascontiguousarray(w.astype(dt, copy=False)))
        bias = ""
        if bias_vector:
            vec = np.broadcast_to(c.const.reshape(-1) if c.const.ndim else c.const, (n,))
            if beta != 1.0:
                vec = vec * np.asarray(beta, dtype=dt)
            bias = ctx.add_const(np.ascontiguousarray(vec.astype(dt, copy=False)))
            c = None
        y = ctx.emit1("dense", [x, w_name, bias])
    else:
        if trans_b:     # B is already [N, K]
            y = ctx.emit1("dense", [x, ctx.input(1), ""])
        else:
            y = ctx.emit1("matmul", [x, ctx.input(1)])
        if alpha != 1.0:
            y = ctx.emit1("mul", [y, _scalar(ctx, alpha, dt)])
    if c is not None:   # a constant C folds its beta here; a runtime one gets a mul node
        cc = ctx.input(2)
        if beta != 1.0:
            cc = ctx.emit1("mul", [cc, _scalar(ctx, beta, dt)])
        y = ctx.emit1("add", [y, cc])
    ctx.set_output(0, y)
