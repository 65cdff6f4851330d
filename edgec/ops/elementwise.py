"""Elementwise ops: unary math and activations, binary arithmetic with numpy broadcasting.

Reference conventions (the oracle for folding and tests):
- float16/float32 transcendental math is computed in float64 and rounded once to the
  input dtype; exact ops (abs, neg, floor, add, ...) run in the input dtype.
- integer arithmetic wraps on overflow; integer division and modulo by zero give 0
  (ONNX leaves them undefined).
- comparisons and logical ops return bool.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir.ops import REQUIRED, register
from ._common import broadcast_shape, same_as_input
from ._ew_util import ALL, BOOL, FLOAT, NUMERIC, SIGNED, check_dtype, check_same_dtype, out, quiet, wide


@register("copy", group="elementwise", infer=same_as_input(), foldable=False)
def copy(x):
    """y = x (a materialized copy; used where a graph output is a constant, an input or repeated)."""
    return (np.array(x, copy=True),)


# -- unary ----------------------------------------------------------------------------------------

def _unary_infer(name: str, allowed: frozenset):
    def infer(inputs, attrs):
        (x,) = inputs
        check_dtype(name, x.dtype, allowed)
        return [(x.dtype, x.shape)]
    return infer


def _unary(name: str, allowed: frozenset, attrs: dict | None = None):
    """Register a one-input, same-type-output elementwise op accepting ``allowed`` dtypes."""
    return register(name, group="elementwise", infer=_unary_infer(name, allowed), attrs=attrs)


@_unary("relu", SIGNED)
def relu(x):
    """y = max(x, 0)"""
    return (np.maximum(x, np.zeros((), x.dtype)).astype(x.dtype),)


@_unary("sigmoid", FLOAT)
def sigmoid(x):
    """y = 1 / (1 + exp(-x))"""
    with quiet():
        return (out(1.0 / (1.0 + np.exp(-wide(x))), x.dtype),)


@_unary("tanh", FLOAT)
def tanh(x):
    """y = tanh(x)"""
    return (out(np.tanh(wide(x)), x.dtype),)


_erf64 = np.frompyfunc(math.erf, 1, 1)


def erf64(x: np.ndarray) -> np.ndarray:
    """The error function of a float64 array (math.erf per element: exact to float64 rounding)."""
    x = wide(x)
    return np.asarray(_erf64(x), dtype=np.float64).reshape(x.shape)


@_unary("erf", FLOAT)
def erf(x):
    """y = erf(x)"""
    return (out(erf64(x), x.dtype),)


@_unary("sqrt", FLOAT)
def sqrt(x):
    """y = sqrt(x) (nan for x < 0)"""
    with quiet():
        return (out(np.sqrt(wide(x)), x.dtype),)


@_unary("exp", FLOAT)
def exp(x):
    """y = exp(x)"""
    with quiet():
        return (out(np.exp(wide(x)), x.dtype),)


@_unary("log", FLOAT)
def log(x):
    """y = ln(x) (-inf at 0, nan below)"""
    with quiet():
        return (out(np.log(wide(x)), x.dtype),)


@_unary("abs", NUMERIC)
def abs_(x):
    """y = |x| (the most negative integer stays itself, as in C)"""
    with quiet():
        return (out(np.abs(x), x.dtype),)


@_unary("neg", SIGNED)
def neg(x):
    """y = -x (integers wrap)"""
    with quiet():
        return (out(np.negative(x), x.dtype),)


@_unary("reciprocal", FLOAT)
def reciprocal(x):
    """y = 1 / x"""
    with quiet():
        return (out(np.reciprocal(x), x.dtype),)


@_unary("floor", FLOAT)
def floor(x):
    """y = floor(x)"""
    return (out(np.floor(x), x.dtype),)


@_unary("ceil", FLOAT)
def ceil(x):
    """y = ceil(x)"""
    return (out(np.ceil(x), x.dtype),)


@_unary("round", FLOAT)
def round_(x):
    """y = x rounded to the nearest integer, halves to even"""
    return (out(np.round(x), x.dtype),)


@_unary("sign", NUMERIC)
def sign(x):
    """y = -1, 0 or 1 by the sign of x (nan stays nan)"""
    return (out(np.sign(x), x.dtype),)


@_unary("sin", FLOAT)
def sin(x):
    """y = sin(x)"""
    with quiet():
        return (out(np.sin(wide(x)), x.dtype),)


@_unary("cos", FLOAT)
def cos(x):
    """y = cos(x)"""
    with quiet():
        return (out(np.cos(wide(x)), x.dtype),)


@_unary("softplus", FLOAT)
def softplus(x):
    """y = ln(1 + exp(x)) (computed without overflow)"""
    return (out(np.logaddexp(0.0, wide(x)), x.dtype),)


@_unary("softsign", FLOAT)
def softsign(x):
    """y = x / (1 + |x|)"""
    xw = wide(x)
    return (out(xw / (1.0 + np.abs(xw)), x.dtype),)


@_unary("hard_swish", FLOAT)
def hard_swish(x):
    """y = x * max(0, min(1, x/6 + 1/2))"""
    xw = wide(x)
    return (out(xw * np.clip(xw / 6.0 + 0.5, 0.0, 1.0), x.dtype),)


@_unary("not", BOOL)
def not_(x):
    """y = logical not x"""
    return (np.logical_not(x),)


@_unary("leaky_relu", FLOAT, attrs={"alpha": 0.01})
def leaky_relu(x, alpha):
    """y = x if x >= 0 else alpha * x"""
    xw = wide(x)
    return (out(np.where(xw >= 0, xw, float(alpha) * xw), x.dtype),)


@_unary("elu", FLOAT, attrs={"alpha": 1.0})
def elu(x, alpha):
    """y = x if x > 0 else alpha * (exp(x) - 1)"""
    xw = wide(x)
    with quiet():
        return (out(np.where(xw > 0, xw, float(alpha) * np.expm1(xw)), x.dtype),)


@_unary("selu", FLOAT, attrs={"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875})
def selu(x, alpha, gamma):
    """y = gamma * x if x > 0 else gamma * alpha * (exp(x) - 1)"""
    xw = wide(x)
    with quiet():
        y = np.where(xw > 0, xw, float(alpha) * np.expm1(xw)) * float(gamma)
    return (out(y, x.dtype),)


@_unary("hard_sigmoid", FLOAT, attrs={"alpha": 0.2, "beta": 0.5})
def hard_sigmoid(x, alpha, beta):
    """y = max(0, min(1, alpha * x + beta))"""
    return (out(np.clip(float(alpha) * wide(x) + float(beta), 0.0, 1.0), x.dtype),)


def _gelu_infer(inputs, attrs):
    if attrs["approximate"] not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate={attrs['approximate']!r}, expected 'none' or 'tanh'")
    return _unary_infer("gelu", FLOAT)(inputs, attrs)


@register("gelu", group="elementwise", infer=_gelu_infer, attrs={"approximate": "none"})
def gelu(x, approximate):
    """y = x * Phi(x) (approximate='none': erf form; 'tanh': the tanh approximation)"""
    xw = wide(x)
    if approximate == "tanh":
        y = 0.5 * xw * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (xw + 0.044715 * xw ** 3)))
    else:
        y = 0.5 * xw * (1.0 + erf64(xw / math.sqrt(2.0)))
    return (out(y, x.dtype),)


def _clip_infer(inputs, attrs):
    (x,) = inputs
    check_dtype("clip", x.dtype, NUMERIC)
    for k in ("min", "max"):
        v = attrs[k]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"clip: attribute {k} must be a number or None, got {v!r}")
    return [(x.dtype, x.shape)]


@register("clip", group="elementwise", infer=_clip_infer, attrs={"min": None, "max": None})
def clip(x, min, max):  # noqa: A002  (ONNX attribute names)
    """y = min(max(x, min), max); None is unbounded; min > max gives max everywhere"""
    y = x
    if min is not None:
        y = np.maximum(y, np.asarray(min).astype(x.dtype))
    if max is not None:
        y = np.minimum(y, np.asarray(max).astype(x.dtype))
    return (out(y, x.dtype),)


def _cast_infer(inputs, attrs):
    (x,) = inputs
    check_dtype("cast", x.dtype, ALL)
    check_dtype("cast", attrs["to"], ALL, what="target")
    return [(attrs["to"], x.shape)]


@register("cast", group="elementwise", infer=_cast_infer, attrs={"to": REQUIRED})
def cast(x, to):
    """y = x converted to dtype ``to``: float->int truncates toward zero, ->bool is x != 0,
    int->int wraps; float->int of nan, inf or out-of-range values is undefined"""
    if to == "bool":
        return (np.asarray(x != 0),)
    if np.dtype(to).kind in "iu" and x.dtype.kind == "f":
        with quiet():
            return (np.trunc(x).astype(to),)
    return (out(x, to),)


# -- binary ---------------------------------------------------------------------------------------

def _binary_infer_for(name: str, allowed: frozenset, result: str | None = None):
    """infer for a two-input op with one dtype from ``allowed``; output dtype ``result`` or the input's."""
    def infer(inputs, attrs):
        a, b = inputs
        dt = check_same_dtype(name, (a, b))
        check_dtype(name, dt, allowed)
        return [(result or dt, broadcast_shape(a.shape, b.shape))]
    return infer


def _binary(name: str, allowed: frozenset, result: str | None = None, attrs: dict | None = None):
    return register(name, group="elementwise", infer=_binary_infer_for(name, allowed, result), attrs=attrs,
                    arity=(2, 2))


@_binary("add", NUMERIC)
def add(a, b):
    """y = a + b (numpy broadcasting; integer overflow wraps)"""
    with quiet():
        return (out(np.add(a, b), a.dtype),)


@_binary("sub", NUMERIC)
def sub(a, b):
    """y = a - b (integer overflow wraps)"""
    with quiet():
        return (out(np.subtract(a, b), a.dtype),)


@_binary("mul", NUMERIC)
def mul(a, b):
    """y = a * b (integer overflow wraps)"""
    with quiet():
        return (out(np.multiply(a, b), a.dtype),)


@_binary("div", NUMERIC)
def div(a, b):
    """y = a / b; integer division truncates toward zero like C (x / 0 gives 0)"""
    with quiet():
        if a.dtype.kind == "f":
            return (out(np.divide(a, b), a.dtype),)
        q = np.floor_divide(a, b)
        if a.dtype.kind == "i":
            r = np.remainder(a, b)
            q = q + ((r != 0) & ((a < 0) != (b < 0))).astype(a.dtype)
        return (out(q, a.dtype),)


@_binary("max", NUMERIC)
def max_(a, b):
    """y = max(a, b) (nan propagates)"""
    return (out(np.maximum(a, b), a.dtype),)


@_binary("min", NUMERIC)
def min_(a, b):
    """y = min(a, b) (nan propagates)"""
    return (out(np.minimum(a, b), a.dtype),)


def _mod_infer(inputs, attrs):
    if attrs["fmod"] not in (0, 1):
        raise ValueError(f"mod: fmod={attrs['fmod']!r}, expected 0 or 1")
    return _binary_infer_for("mod", NUMERIC)(inputs, attrs)


@register("mod", group="elementwise", infer=_mod_infer, attrs={"fmod": 0}, arity=(2, 2))
def mod(a, b, fmod):
    """fmod=0: a - floor(a/b)*b (sign of b, Python %); fmod=1: a - trunc(a/b)*b (sign of a, C fmod).
    Integer modulo by 0 gives 0; float modulo by 0 gives nan."""
    with quiet():
        return (out(np.fmod(a, b) if fmod else np.mod(a, b), a.dtype),)


def _pow_infer(inputs, attrs):
    a, b = inputs
    check_dtype("pow", a.dtype, NUMERIC, what="base")
    check_dtype("pow", b.dtype, NUMERIC, what="exponent")
    return [(a.dtype, broadcast_shape(a.shape, b.shape))]


@register("pow", group="elementwise", infer=_pow_infer, arity=(2, 2))
def pow_(a, b):
    """y = a ** b with the dtype of a (b may have another dtype). Computed in float64 and
    converted to a's dtype (integers truncate toward zero: 2 ** -1 == 0), as C's pow() does."""
    with quiet():
        if a.dtype == np.float64 and b.dtype == np.float64:
            return (out(np.power(a, b), a.dtype),)
        y = np.power(wide(a), wide(b))
        if a.dtype.kind in "iu":
            y = np.trunc(y)
        return (out(y, a.dtype),)


# -- comparisons and logic ------------------------------------------------------------------------

@_binary("equal", ALL, result="bool")
def equal(a, b):
    """y = a == b"""
    return (np.asarray(np.equal(a, b)),)


@_binary("less", NUMERIC, result="bool")
def less(a, b):
    """y = a < b"""
    return (np.asarray(np.less(a, b)),)


@_binary("less_equal", NUMERIC, result="bool")
def less_equal(a, b):
    """y = a <= b"""
    return (np.asarray(np.less_equal(a, b)),)


@_binary("greater", NUMERIC, result="bool")
def greater(a, b):
    """y = a > b"""
    return (np.asarray(np.greater(a, b)),)


@_binary("greater_equal", NUMERIC, result="bool")
def greater_equal(a, b):
    """y = a >= b"""
    return (np.asarray(np.greater_equal(a, b)),)


@_binary("and", BOOL)
def and_(a, b):
    """y = a and b"""
    return (np.asarray(np.logical_and(a, b)),)


@_binary("or", BOOL)
def or_(a, b):
    """y = a or b"""
    return (np.asarray(np.logical_or(a, b)),)


@_binary("xor", BOOL)
def xor(a, b):
    """y = a xor b"""
    return (np.asarray(np.logical_xor(a, b)),)


def _where_infer(inputs, attrs):
    c, a, b = inputs
    check_dtype("where", c.dtype, BOOL, what="condition")
    dt = check_same_dtype("where", (a, b))
    return [(dt, broadcast_shape(c.shape, a.shape, b.shape))]


@register("where", group="elementwise", infer=_where_infer, arity=(3, 3))
def where(cond, a, b):
    """y = a where cond else b (three-way broadcasting)"""
    return (out(np.where(cond, a, b), a.dtype),)


def _prelu_infer(inputs, attrs):
    x, slope = inputs
    dt = check_same_dtype("prelu", (x, slope))
    check_dtype("prelu", dt, NUMERIC)
    if broadcast_shape(x.shape, slope.shape) != tuple(x.shape):
        raise ValueError(f"prelu: slope shape {list(slope.shape)} does not broadcast to x shape {list(x.shape)}")
    return [(dt, x.shape)]


@register("prelu", group="elementwise", infer=_prelu_infer, arity=(2, 2))
def prelu(x, slope):
    """y = x if x >= 0 else slope * x (slope broadcast to x)"""
    with quiet():
        return (out(np.where(x < 0, x * slope, x), x.dtype),)

