"""Converters for ONNX elementwise ops (unary math, activations, arithmetic, comparisons, logic).

``since`` is the first ONNX op version a converter handles; it applies until a converter
with a higher ``since`` exists. Versions below the one in effect at opset 7 are never
reached (the importer starts at opset 7).
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes
from ..registry import ConvertContext, converter


@converter("Identity", since=1)
def identity(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.input(0))


@converter("Relu", since=6)
def relu(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.emit1("relu", [ctx.input(0)]))


@converter("Add", since=7)
def add(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.emit1("add", [ctx.input(0), ctx.input(1)]))


# -- unary ops without attributes -----------------------------------------------------------------

def _unary_converter(ir_op: str):
    def convert(ctx: ConvertContext) -> None:
        ctx.check_attrs({})
        ctx.set_output(0, ctx.emit1(ir_op, [ctx.input(0)]))
    convert.__name__ = f"convert_{ir_op}"
    return convert


# ONNX op -> (IR op, first version handled). Later versions only widened the dtypes.
_UNARY = {
    "Sigmoid": ("sigmoid", 6), "Tanh": ("tanh", 6), "Erf": ("erf", 9), "Sqrt": ("sqrt", 6),
    "Exp": ("exp", 6), "Log": ("log", 6), "Abs": ("abs", 6), "Neg": ("neg", 6),
    "Reciprocal": ("reciprocal", 6), "Floor": ("floor", 6), "Ceil": ("ceil", 6), "Round": ("round", 11),
    "Sign": ("sign", 9), "Sin": ("sin", 7), "Cos": ("cos", 7), "Softplus": ("softplus", 1),
    "Softsign": ("softsign", 1), "HardSwish": ("hard_swish", 14), "Not": ("not", 1),
}
for _op, (_ir, _since) in _UNARY.items():
    converter(_op, since=_since)(_unary_converter(_ir))


# -- activations with attributes ------------------------------------------------------------------

@converter("LeakyRelu", since=6)
def leaky_relu(ctx: ConvertContext) -> None:
    ctx.check_attrs({"alpha": None})
    ctx.set_output(0, ctx.emit1("leaky_relu", [ctx.input(0)], {"alpha": float(ctx.attr("alpha", 0.01))}))


@converter("Elu", since=6)
def elu(ctx: ConvertContext) -> None:
    ctx.check_attrs({"alpha": None})
    ctx.set_output(0, ctx.emit1("elu", [ctx.input(0)], {"alpha": float(ctx.attr("alpha", 1.0))}))


@converter("Selu", since=6)
def selu(ctx: ConvertContext) -> None:
    ctx.check_attrs({"alpha": None, "gamma": None})
    attrs = {"alpha": float(ctx.attr("alpha", 1.67326319217681884765625)),
             "gamma": float(ctx.attr("gamma", 1.05070102214813232421875))}
    ctx.set_output(0, ctx.emit1("selu", [ctx.input(0)], attrs))


@converter("HardSigmoid", since=6)
def hard_sigmoid(ctx: ConvertContext) -> None:
    ctx.check_attrs({"alpha": None, "beta": None})
    attrs = {"alpha": float(ctx.attr("alpha", 0.2)), "beta": float(ctx.attr("beta", 0.5))}
    ctx.set_output(0, ctx.emit1("hard_sigmoid", [ctx.input(0)], attrs))


@converter("Gelu", since=20)
def gelu(ctx: ConvertContext) -> None:
    ctx.check_attrs({"approximate": lambda v: v in ("none", "tanh")})
    ctx.set_output(0, ctx.emit1("gelu", [ctx.input(0)], {"approximate": ctx.attr("approximate", "none")}))


def _float_scalar(ctx: ConvertContext, value: float) -> str:
    """A scalar constant of input 0's (float) dtype."""
    dt = ctx.dtype(0)
    if not dtypes.is_float(dt):
        ctx.unsupported(f"input dtype {dt} is not supported (float only)")
    return ctx.add_const(np.asarray(value, dtype=dt))


@converter("Celu", since=12)
def celu(ctx: ConvertContext) -> None:
    """Celu(x) = max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) = alpha * elu(x / alpha)."""
    ctx.check_attrs({"alpha": None})
    alpha = float(ctx.attr("alpha", 1.0))
    if alpha == 1.0:
        ctx.set_output(0, ctx.emit1("elu", [ctx.input(0)], {"alpha": 1.0}))
        return
    a = _float_scalar(ctx, alpha)
    scaled = ctx.emit1("div", [ctx.input(0), a])
    ctx.set_output(0, ctx.emit1("mul", [ctx.emit1("elu", [scaled], {"alpha": 1.0}), a]))


@converter("ThresholdedRelu", since=10)
def thresholded_relu(ctx: ConvertContext) -> None:
    """x if x > alpha else 0."""
    ctx.check_attrs({"alpha": None})
    alpha = _float_scalar(ctx, float(ctx.attr("alpha", 1.0)))
    keep = ctx.emit1("greater", [ctx.input(0), alpha])
    ctx.set_output(0, ctx.emit1("where", [keep, ctx.input(0), _float_scalar(ctx, 0.0)]))


@converter("Mish", since=18)
def mish(ctx: ConvertContext) -> None:
    """x * tanh(softplus(x))."""
    ctx.check_attrs({})
    t = ctx.emit1("tanh", [ctx.emit1("softplus", [ctx.input(0)])])
    ctx.set_output(0, ctx.emit1("mul", [ctx.input(0), t]))


@converter("PRelu", since=7)
def prelu(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.emit1("prelu", [ctx.input(0), ctx.input(1)]))


def _scalar_of(ctx: ConvertContext, i: int, what: str):
    """Input ``i`` as a Python scalar (it must be a one-element constant); None when absent."""
    arr = ctx.const(i, what)
    if arr is None:
        return None
    if arr.size != 1:
        ctx.unsupported(f"{what} must be a single value, got shape {list(arr.shape)}")
    return arr.reshape(()).item()


@converter("Clip", since=6)
def clip_6(ctx: ConvertContext) -> None:
    ctx.check_attrs({"min": None, "max": None})
    attrs = {k: None if ctx.attr(k) is None else float(ctx.attr(k)) for k in ("min", "max")}
    if attrs["min"] is None and attrs["max"] is None:
        ctx.set_output(0, ctx.input(0))
    else:
        ctx.set_output(0, ctx.emit1("clip", [ctx.input(0)], attrs))


@converter("Clip", since=11)
def clip_11(ctx: ConvertContext) -> None:
    """Constant bounds become clip's attributes; runtime bounds become max/min nodes
    (same result: min(max(x, lo), hi), hi wins where lo > hi)."""
    ctx.check_attrs({})
    for i, what in ((1, "min"), (2, "max")):
        v = ctx.value(i)
        if v is None:
            continue
        if v.dtype != ctx.dtype(0):
            ctx.unsupported(f"{what} has dtype {v.dtype}, the input is {ctx.dtype(0)}")
        if v.shape not in ((), (1,)):
            ctx.unsupported(f"{what} must be a single value, got shape {list(v.shape)}")
    vals = [ctx.value(1), ctx.value(2)]
    if all(v is None or v.const is not None for v in vals):
        lo, hi = _scalar_of(ctx, 1, "min"), _scalar_of(ctx, 2, "max")
        ctx.set_output(0, ctx.input(0) if lo is None and hi is None else
                       ctx.emit1("clip", [ctx.input(0)], {"min": lo, "max": hi}))
        return
    # the lower bound first, then the upper one: where lo > hi the result is hi, as in ONNX
    y = ctx.input(0)
    for i, what, ir_op in ((1, "min", "max"), (2, "max", "min")):
        v = vals[i - 1]
        if v is None:
            continue
        if v.const is not None:
            y = ctx.emit1("clip", [y], {what: _scalar_of(ctx, i, what)})
        else:
            bound = ctx.input(i) if v.shape == () else ctx.emit1("reshape", [ctx.input(i)], {"shape": ()})
            y = ctx.emit1(ir_op, [y, bound])
    ctx.set_output(0, y)


# -- casts and dropout ----------------------------------------------------------------------------

def _emit_cast(ctx: ConvertContext, to: str) -> None:
    if ctx.dtype(0) == to:
        ctx.set_output(0, ctx.input(0))
    else:
        ctx.set_output(0, ctx.emit1("cast", [ctx.input(0)], {"to": to}))


@converter("Cast", since=6)
def cast(ctx: ConvertContext) -> None:
    # saturate and round_mode only affect float8/float4 targets, which are rejected below
    ctx.check_attrs({"to": None, "saturate": None, "round_mode": None})
    code = ctx.attr("to")
    if code not in dtypes.ONNX_TO_NAME:
        ctx.unsupported(f"cast to {dtypes.onnx_dtype_name(code)} is not supported")
    _emit_cast(ctx, dtypes.ONNX_TO_NAME[code])


@converter("CastLike", since=15)
def cast_like(ctx: ConvertContext) -> None:
    ctx.check_attrs({"saturate": None, "round_mode": None})
    _emit_cast(ctx, ctx.dtype(1))


def _dropout_mask(ctx: ConvertContext, dtype: str) -> None:
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        ctx.set_output(1, ctx.add_const(np.ones(ctx.shape(0), dtype=dtype)))


@converter("Dropout", since=7)
def dropout_7(ctx: ConvertContext) -> None:
    """Inference Dropout: the identity; the mask (same dtype as the input until version 10) is all ones."""
    ctx.check_attrs({"ratio": None})
    ctx.set_output(0, ctx.input(0))
    _dropout_mask(ctx, ctx.dtype(0))


@converter("Dropout", since=10)
def dropout_10(ctx: ConvertContext) -> None:
    ctx.check_attrs({"ratio": None})
    ctx.set_output(0, ctx.input(0))
    _dropout_mask(ctx, "bool")


@converter("Dropout", since=12)
def dropout_12(ctx: ConvertContext) -> None:
    ctx.check_attrs({"seed": None})
    if ctx.has_input(2):
        training = ctx.const(2, "training_mode")
        if bool(np.any(training)):
            ctx.unsupported("training_mode=true (random dropout) is not supported")
    ctx.set_output(0, ctx.input(0))
    _dropout_mask(ctx, "bool")


# -- binary ops -----------------------------------------------------------------------------------

def _binary_converter(ir_op: str):
    def convert(ctx: ConvertContext) -> None:
        ctx.check_attrs({})
        ctx.set_output(0, ctx.emit1(ir_op, [ctx.input(0), ctx.input(1)]))
    convert.__name__ = f"convert_{ir_op}"
    return convert


_BINARY = {
    "Sub": ("sub", 7), "Mul": ("mul", 7), "Div": ("div", 7), "Pow": ("pow", 7),
    "Equal": ("equal", 7), "Less": ("less", 7), "Greater": ("greater", 7),
    "LessOrEqual": ("less_equal", 12), "GreaterOrEqual": ("greater_equal", 12),
    "And": ("and", 7), "Or": ("or", 7), "Xor": ("xor", 7),
}
for _op, (_ir, _since) in _BINARY.items():
    converter(_op, since=_since)(_binary_converter(_ir))


@converter("Mod", since=10)
def mod(ctx: ConvertContext) -> None:
    ctx.check_attrs({"fmod": lambda v: v in (0, 1)})
    fmod = int(ctx.attr("fmod", 0))
    ctx.set_output(0, ctx.emit1("mod", [ctx.input(0), ctx.input(1)], {"fmod": fmod}))


def _chain(ctx: ConvertContext, ir_op: str) -> str:
    names = [ctx.input(i) for i in range(ctx.n_inputs)]
    if not names or any(n == "" for n in names):
        ctx.unsupported("every input must be present")
    acc = names[0]
    for n in names[1:]:
        acc = ctx.emit1(ir_op, [acc, n])
    return acc


@converter("Max", since=6)
def max_(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, _chain(ctx, "max"))


@converter("Min", since=6)
def min_(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, _chain(ctx, "min"))


@converter("Sum", since=6)
def sum_(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, _chain(ctx, "add"))


@converter("Mean", since=6)
def mean(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    total = _chain(ctx, "add")
    if ctx.n_inputs == 1:
        ctx.set_output(0, total)
        return
    dt = ctx.dtype(0)
    if dt not in ("float16", "float32", "float64"):
        ctx.unsupported(f"Mean of {dt} inputs is not supported (float only)")
    inv = ctx.add_const(np.asarray(1.0 / ctx.n_inputs, dtype=dt))
    ctx.set_output(0, ctx.emit1("mul", [total, inv]))


@converter("Where", since=9)
def where(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.emit1("where", [ctx.input(0), ctx.input(1), ctx.input(2)]))
