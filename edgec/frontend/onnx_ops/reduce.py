"""Converters for ONNX reductions (Reduce*) and ArgMax/ArgMin.

Axes moved from an attribute to an optional second input at version 13 (ReduceSum) and
18 (the others). No or empty axes reduce over every axis, unless noop_with_empty_axes=1:
then the op reduces over no axis, which is the identity for sum/mean/max/min/prod and the
elementwise part (x^2, |x|, log(exp(x))) for the composite reductions. ReduceL1 and
ReduceLogSum become abs -> reduce_sum and reduce_sum -> log.
"""
from __future__ import annotations

from ..registry import ConvertContext, converter
from .tensor import _ints_input, _norm_axes, _reshape_to

# reductions whose no-op form is the identity
_IDENTITY_WHEN_EMPTY = {"reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"}


def _reduce(ctx: ConvertContext, ir_op: str, axes, pre: str | None = None, post: str | None = None) -> None:
    """Emit ``post(ir_op(pre(x), axes))`` (``pre``/``post``: optional unary IR ops)."""
    keepdims = int(ctx.attr("keepdims", 1))
    noop = int(ctx.attr("noop_with_empty_axes", 0))
    if keepdims not in (0, 1) or noop not in (0, 1):
        ctx.unsupported(f"keepdims={keepdims}, noop_with_empty_axes={noop}: expected 0 or 1")
    x = ctx.input(0)
    shape = ctx.shape(0)
    r = len(shape)
    if pre:
        x = ctx.emit1(pre, [x])
    if not axes and noop:
        if ir_op in _IDENTITY_WHEN_EMPTY:
            y = x
        else:  # reduce over an added axis of size 1: the elementwise part only
            x1 = _reshape_to(ctx, x, tuple(shape) + (1,))
            y = ctx.emit1(ir_op, [x1], {"axes": (r,), "keepdims": 0})
    else:
        axes = sorted(_norm_axes(ctx, axes, r)) if axes else list(range(r))
        if r == 0:  # a scalar: reduce a one-element vector back to a scalar
            x = _reshape_to(ctx, x, (1,))
            axes, keepdims = [0], 0
        y = ctx.emit1(ir_op, [x], {"axes": tuple(axes), "keepdims": keepdims})
    ctx.set_output(0, ctx.emit1(post, [y]) if post else y)


def _attr_axes_converter(ir_op: str, pre: str | None = None, post: str | None = None):
    def convert(ctx: ConvertContext) -> None:
        ctx.check_attrs({"axes": None, "keepdims": None})
        _reduce(ctx, ir_op, ctx.attr("axes"), pre, post)
    convert.__name__ = f"convert_{ir_op}_attr_axes"
    return convert


def _input_axes_converter(ir_op: str, pre: str | None = None, post: str | None = None):
    def convert(ctx: ConvertContext) -> None:
        ctx.check_attrs({"keepdims": None, "noop_with_empty_axes": None})
        _reduce(ctx, ir_op, _ints_input(ctx, 1, "axes"), pre, post)
    convert.__name__ = f"convert_{ir_op}_input_axes"
    return convert


# ONNX op -> (IR reduction, version where axes became an input, op applied before, op applied after)
_REDUCE = {
    "ReduceSum": ("reduce_sum", 13, None, None), "ReduceMean": ("reduce_mean", 18, None, None),
    "ReduceMax": ("reduce_max", 18, None, None), "ReduceMin": ("reduce_min", 18, None, None),
    "ReduceProd": ("reduce_prod", 18, None, None), "ReduceL2": ("reduce_l2", 18, None, None),
    "ReduceSumSquare": ("reduce_sum_square", 18, None, None),
    "ReduceLogSumExp": ("reduce_log_sum_exp", 18, None, None),
    # composites of the above
    "ReduceL1": ("reduce_sum", 18, "abs", None), "ReduceLogSum": ("reduce_sum", 18, None, "log"),
}
for _op, (_ir, _input_since, _pre, _post) in _REDUCE.items():
    converter(_op, since=1)(_attr_axes_converter(_ir, _pre, _post))
    converter(_op, since=_input_since)(_input_axes_converter(_ir, _pre, _post))


def _arg_converter(ir_op: str):
    def convert(ctx: ConvertContext) -> None:
        ctx.check_attrs({"axis": None, "keepdims": lambda v: v in (0, 1), "select_last_index": lambda v: v in (0, 1)})
        (axis,) = _norm_axes(ctx, [ctx.attr("axis", 0)], len(ctx.shape(0)), "axis")
        attrs = {"axis": axis, "keepdims": int(ctx.attr("keepdims", 1)),
                 "select_last_index": int(ctx.attr("select_last_index", 0))}
        ctx.set_output(0, ctx.emit1(ir_op, [ctx.input(0)], attrs))
    convert.__name__ = f"convert_{ir_op}"
    return convert


converter("ArgMax", since=1)(_arg_converter("argmax"))
converter("ArgMin", since=1)(_arg_converter("argmin"))
