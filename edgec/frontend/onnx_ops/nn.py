"""Converters for ONNX nn ops: Conv, ConvTranspose, pooling, normalizations, softmax, Resize/Upsample,
DepthToSpace, SpaceToDepth.

``since`` is the first ONNX op version a converter handles; it applies until a converter with a
higher ``since`` exists. Versions older than the one in effect at opset 7 are never reached.
Every geometric choice (auto_pad, ceil_mode, output_shape, Resize sizes/axes/aspect policy) is
resolved here into the explicit attributes of the IR op (see docs/ops.md).
"""
from __future__ import annotations

import numpy as np

from ...ops._nn_util import ceil_extra_pads, effective_kernel, same_pads
from ..registry import ConvertContext, converter

_AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _spatial_rank(ctx: ConvertContext, lo: int = 1, hi: int = 3) -> int:
    shape = ctx.shape(0)
    r = len(shape) - 2
    if not lo <= r <= hi:
        ctx.unsupported(f"input of shape {list(shape)}: {lo} to {hi} spatial axes are supported")
    return r


def _ints(ctx: ConvertContext, name: str, n: int, default: int) -> list[int]:
    v = ctx.attr(name)
    if v is None:
        return [default] * n
    v = [int(a) for a in v]
    if len(v) != n:
        ctx.unsupported(f"attribute {name}={v} needs {n} values for {n // (2 if name == 'pads' else 1)} spatial axes")
    return v


def _auto_pad(ctx: ConvertContext) -> str:
    mode = ctx.attr("auto_pad", "NOTSET")
    if mode not in _AUTO_PADS:
        ctx.unsupported(f"auto_pad={mode!r} is not one of {_AUTO_PADS}")
    return mode


def _window_pads(ctx: ConvertContext, spatial, kernel, strides, dilations) -> list[int]:
    """Explicit (begin..., end...) pads from auto_pad / pads."""
    r = len(spatial)
    mode = _auto_pad(ctx)
    if mode == "NOTSET":
        return _ints(ctx, "pads", 2 * r, 0)
    if mode == "VALID":
        return [0] * (2 * r)
    return same_pads(spatial, kernel, strides, dilations, mode)


# -- Conv / ConvTranspose ----------------------------------------------------------------------------
def _kernel_from_weight(ctx: ConvertContext, r: int) -> list[int]:
    w_shape = ctx.shape(1)
    if len(w_shape) != r + 2:
        ctx.unsupported(f"weight of shape {list(w_shape)} does not match an input with {r} spatial axes")
    ks = list(w_shape[2:])
    given = ctx.attr("kernel_shape")
    if given is not None and [int(k) for k in given] != ks:
        ctx.unsupported(f"kernel_shape={list(given)} disagrees with the weight's spatial shape {ks}")
    return ks


@converter("Conv", since=1)
def conv(ctx: ConvertContext) -> None:
    ctx.check_attrs({"auto_pad": None, "dilations": None, "group": None, "kernel_shape": None, "pads": None,
                     "strides": None})
    r = _spatial_rank(ctx)
    ks = _kernel_from_weight(ctx, r)
    strides = _ints(ctx, "strides", r, 1)
    dilations = _ints(ctx, "dilations", r, 1)
    pads = _window_pads(ctx, ctx.shape(0)[2:], ks, strides, dilations)
    attrs = {"strides": strides, "pads": pads, "dilations": dilations, "group": int(ctx.attr("group", 1))}
    ctx.set_output(0, ctx.emit1("conv", [ctx.input(0), ctx.input(1), ctx.input(2)], attrs))


@converter("ConvTranspose", since=1)
def conv_transpose(ctx: ConvertContext) -> None:
    ctx.check_attrs({"auto_pad": None, "dilations": None, "group": None, "kernel_shape": None, "pads": None,
                     "strides": None, "output_padding": None, "output_shape": None})
    r = _spatial_rank(ctx)
    ks = _kernel_from_weight(ctx, r)
    strides = _ints(ctx, "strides", r, 1)
    dilations = _ints(ctx, "dilations", r, 1)
    out_pad = _ints(ctx, "output_padding", r, 0)
    spatial = ctx.shape(0)[2:]
    mode = _auto_pad(ctx)
    natural = [strides[i] * (spatial[i] - 1) + out_pad[i] + effective_kernel(ks[i], dilations[i]) for i in range(r)]
    out_shape = ctx.attr("output_shape")
    if out_shape is not None:
        out_shape = [int(v) for v in out_shape]
        if len(out_shape) == r + 2:
            out_shape = out_shape[2:]
        if len(out_shape) != r:
            ctx.unsupported(f"output_shape={out_shape} needs {r} spatial values")
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [spatial[i] * strides[i] for i in range(r)]
    if out_shape is not None:
        # ONNX: total padding split evenly; SAME_UPPER puts the odd one at the end, else at the begin.
        # A larger output than the natural one (up to stride - 1 more) is padded with zeros at the end.
        begin, end = [], []
        for i in range(r):
            total = natural[i] - out_shape[i]
            if total <= -strides[i]:
                ctx.unsupported(f"output_shape {out_shape} does not fit the input {list(spatial)} "
                                f"(axis {i}: at most {natural[i] + strides[i] - 1} is reachable)")
            t = max(total, 0)
            b, e = (t // 2, t - t // 2) if mode == "SAME_UPPER" else (t - t // 2, t // 2)
            begin.append(b)
            end.append(e + min(total, 0))
        pads = begin + end
    elif mode == "VALID":
        pads = [0] * (2 * r)
    else:
        pads = _ints(ctx, "pads", 2 * r, 0)
    attrs = {"strides": strides, "pads": pads, "dilations": dilations, "group": int(ctx.attr("group", 1)),
             "output_padding": out_pad}
    ctx.set_output(0, ctx.emit1("conv_transpose", [ctx.input(0), ctx.input(1), ctx.input(2)], attrs))


# -- pooling -----------------------------------------------------------------------------------------
def _pool_geometry(ctx: ConvertContext):
    """(kernel, strides, dilations, pads, ceil-mode extra end pads) of MaxPool / AveragePool."""
    r = _spatial_rank(ctx)
    ks = ctx.attr("kernel_shape")
    if ks is None:
        ctx.unsupported("kernel_shape is required")
    ks = [int(k) for k in ks]
    if len(ks) != r or any(k < 1 for k in ks):
        ctx.unsupported(f"kernel_shape={ks} does not fit an input with {r} spatial axes")
    strides = _ints(ctx, "strides", r, 1)
    dilations = _ints(ctx, "dilations", r, 1)
    spatial = ctx.shape(0)[2:]
    pads = _window_pads(ctx, spatial, ks, strides, dilations)
    ceil_mode = int(ctx.attr("ceil_mode", 0))
    if ceil_mode not in (0, 1):
        ctx.unsupported(f"ceil_mode={ceil_mode}")
    extra = [0] * r
    if ceil_mode and _auto_pad(ctx) == "NOTSET":   # SAME and VALID give the same size in both modes
        extra = ceil_extra_pads(spatial, ks, strides, dilations, pads)
    return ks, strides, dilations, pads, extra


@converter("MaxPool", since=1)
def max_pool(ctx: ConvertContext) -> None:
    ctx.check_attrs({"auto_pad": None, "ceil_mode": None, "dilations": None, "kernel_shape": None, "pads": None,
                     "storage_order": None, "strides": None})
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        ctx.unsupported("the Indices output is not supported")
    ks, strides, dilations, pads, extra = _pool_geometry(ctx)
    r = len(ks)
    pads = pads[:r] + [pads[r + i] + extra[i] for i in range(r)]
    attrs = {"kernel": ks, "strides": strides, "pads": pads, "dilations": dilations}
    ctx.set_output(0, ctx.emit1("max_pool", [ctx.input(0)], attrs))


@converter("AveragePool", since=1)
def avg_pool(ctx: ConvertContext) -> None:
    ctx.check_attrs({"auto_pad": None, "ceil_mode": None, "count_include_pad": None, "dilations": None,
                     "kernel_shape": None, "pads": None, "strides": None})
    ks, strides, dilations, pads, extra = _pool_geometry(ctx)
    r = len(ks)
    count_pad = int(ctx.attr("count_include_pad", 0))
    x = ctx.input(0)
    if count_pad and any(extra) and any(pads):
        # the real pads count, the ceil-mode extra must not: pad explicitly, then count in-bounds taps
        x = ctx.emit1("pad", [x], {"pads": [0, 0] + pads[:r] + [0, 0] + pads[r:], "mode": "constant",
                                    "value": 0.0})
        pads, count_pad = [0] * (2 * r), 0
    elif count_pad and any(extra):
        count_pad = 0   # no real padding: counting in-bounds taps excludes exactly the extra
    pads = pads[:r] + [pads[r + i] + extra[i] for i in range(r)]
    attrs = {"kernel": ks, "strides": strides, "pads": pads, "dilations": dilations, "count_include_pad": count_pad}
    ctx.set_output(0, ctx.emit1("avg_pool", [x], attrs))


@converter("GlobalAveragePool", since=1)
def global_avg_pool(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.emit1("global_avg_pool", [ctx.input(0)]))


@converter("GlobalMaxPool", since=1)
def global_max_pool(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.emit1("global_max_pool", [ctx.input(0)]))


# -- normalizations ----------------------------------------------------------------------------------
def _only_first_output(ctx: ConvertContext, what: str) -> None:
    extra = [o for o in ctx.node.output[1:] if o]
    if extra:
        ctx.unsupported(f"{what} outputs {extra} are not supported (only the first output is)")


@converter("LRN", since=1)
def lrn(ctx: ConvertContext) -> None:
    ctx.check_attrs({"alpha": None, "beta": None, "bias": None, "size": None})
    size = ctx.attr("size")
    if size is None:
        ctx.unsupported("attribute size is required")
    attrs = {"size": int(size), "alpha": float(ctx.attr("alpha", 1e-4)), "beta": float(ctx.attr("beta", 0.75)),
             "bias": float(ctx.attr("bias", 1.0))}
    ctx.set_output(0, ctx.emit1("lrn", [ctx.input(0)], attrs))


@converter("BatchNormalization", since=7)
def batch_norm(ctx: ConvertContext) -> None:
    ctx.check_attrs({"epsilon": None, "momentum": None, "spatial": lambda v: int(v) == 1,
                     "training_mode": lambda v: int(v) == 0})
    _only_first_output(ctx, "training-mode")
    ins = [ctx.input(i) for i in range(5)]
    ctx.set_output(0, ctx.emit1("batch_norm", ins, {"epsilon": float(ctx.attr("epsilon", 1e-5))}))


@converter("InstanceNormalization", since=1)
def instance_norm(ctx: ConvertContext) -> None:
    ctx.check_attrs({"epsilon": None})
    ins = [ctx.input(i) for i in range(3)]
    ctx.set_output(0, ctx.emit1("instance_norm", ins, {"epsilon": float(ctx.attr("epsilon", 1e-5))}))


@converter("LayerNormalization", since=17)
def layer_norm(ctx: ConvertContext) -> None:
    ctx.check_attrs({"axis": None, "epsilon": None, "stash_type": lambda v: int(v) == 1})
    rank = len(ctx.shape(0))
    axis = int(ctx.attr("axis", -1))
    if not -rank <= axis < rank:
        ctx.unsupported(f"axis={axis} is out of range for rank {rank}")
    eps = float(ctx.attr("epsilon", 1e-5))
    attrs = {"axis": axis % rank, "epsilon": eps}
    ctx.set_output(0, ctx.emit1("layer_norm", [ctx.input(0), ctx.input(1), ctx.input(2)], attrs))
    wanted = [k for k in (1, 2) if k < len(ctx.node.output) and ctx.node.output[k]]
    if wanted:
        # the optional Mean and InvStdDev outputs (float32, stash_type 1), computed beside the
        # fused op only when the model names them
        x = ctx.input(0)
        if ctx.dtype(0) != "float32":
            x = ctx.emit1("cast", [x], {"to": "float32"})
        axes = {"axes": tuple(range(axis % rank, rank)), "keepdims": 1}
        mean = ctx.emit1("reduce_mean", [x], axes)
        d = ctx.emit1("sub", [x, mean])
        var = ctx.emit1("reduce_mean", [ctx.emit1("mul", [d, d])], axes)
        std = ctx.emit1("sqrt", [ctx.emit1("add", [var, ctx.add_const(np.float32(eps))])])
        ctx.set_output(1, mean)
        if 2 in wanted:
            ctx.set_output(2, ctx.emit1("reciprocal", [std]))


# -- softmax -----------------------------------------------------------------------------------------
def _softmax(ir_op: str, coerce_2d: bool):
    def convert(ctx: ConvertContext) -> None:
        ctx.check_attrs({"axis": None})
        shape = ctx.shape(0)
        rank = len(shape)
        axis = int(ctx.attr("axis", 1 if coerce_2d else -1))
        if not -max(rank, 1) <= axis < max(rank, 1):
            ctx.unsupported(f"axis={axis} is out of range for rank {rank}")
        if rank == 0:
            ctx.unsupported("a scalar input has no axis to normalize")
        axis %= rank
        x = ctx.input(0)
        if not coerce_2d or axis == rank - 1:
            # opset >= 13, or the 2-D coercion [prod(before), prod(after)] is the last axis itself
            ctx.set_output(0, ctx.emit1(ir_op, [x], {"axis": axis}))
            return
        rows = int(np.prod(shape[:axis], dtype=np.int64))
        flat = ctx.emit1("reshape", [x], {"shape": (rows, int(np.prod(shape[axis:], dtype=np.int64)))})
        y = ctx.emit1(ir_op, [flat], {"axis": 1})
        ctx.set_output(0, ctx.emit1("reshape", [y], {"shape": tuple(shape)}))
    convert.__name__ = f"convert_{ir_op}"
    return convert


for _onnx, _ir in (("Softmax", "softmax"), ("LogSoftmax", "log_softmax")):
    converter(_onnx, since=1)(_softmax(_ir, coerce_2d=True))
    converter(_onnx, since=13)(_softmax(_ir, coerce_2d=False))


# -- Resize / Upsample -------------------------------------------------------------------------------
def _const_floats(ctx: ConvertContext, i: int, what: str) -> list[float] | None:
    """Constant input ``i`` as floats; None when absent or empty (the opset-11 'unused' form)."""
    if not ctx.has_input(i):
        return None
    v = ctx.value(i)
    if v.const is None:
        ctx.unsupported(f"{what} (input {i}) must be a constant; a runtime {what} gives a dynamic output shape")
    arr = np.asarray(v.const)
    return None if arr.size == 0 else [float(a) for a in arr.reshape(-1)]


def _resize_attrs(scales, out_shape, mode: str, ctm: str, nearest_mode: str, cubic_a: float = -0.75,
                  exclude_outside: int = 0, extrapolation_value: float = 0.0, roi: tuple = ()) -> dict:
    return {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nearest_mode,
            "scales": tuple(float(s) for s in scales), "cubic_coeff_a": float(cubic_a),
            "exclude_outside": int(exclude_outside), "extrapolation_value": float(extrapolation_value),
            "roi": tuple(float(v) for v in roi), "out_shape": tuple(int(d) for d in out_shape)}


def _emit_resize(ctx: ConvertContext, scales, out_shape, mode: str, ctm: str, nearest_mode: str,
                 cubic_a: float = -0.75, exclude_outside: int = 0, extrapolation_value: float = 0.0,
                 roi: tuple = ()) -> None:
    in_shape = ctx.shape(0)
    if list(out_shape) == list(in_shape) and all(s == 1.0 for s in scales) and \
            (mode == "nearest" or ctm not in ("tf_crop_and_resize", "tf_half_pixel_for_nn")):
        ctx.set_output(0, ctx.input(0))   # identity: every output coordinate maps onto itself
        return
    attrs = _resize_attrs(scales, out_shape, mode, ctm, nearest_mode, cubic_a, exclude_outside,
                          extrapolation_value, roi)
    ctx.set_output(0, ctx.emit1("resize", [ctx.input(0)], attrs))


def _legacy_upsample(ctx: ConvertContext, scales: list[float] | None) -> None:
    """Upsample 7/9 and Resize 10: asymmetric coordinates, output = floor(in * scale)."""
    in_shape = ctx.shape(0)
    if scales is None or len(scales) != len(in_shape):
        ctx.unsupported(f"scales {scales} must give one value per axis of the {len(in_shape)}-D input")
    if any(not s > 0 for s in scales):
        ctx.unsupported(f"scales {scales} must be positive")
    mode = ctx.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear"):
        ctx.unsupported(f"mode={mode!r} is not supported")
    out_shape = [int(np.floor(np.float32(d) * np.float32(s))) for d, s in zip(in_shape, scales)]
    if any(d < 1 for d in out_shape):
        ctx.unsupported(f"scales {scales} give an empty output {out_shape}")
    if mode != "nearest":
        _emit_resize(ctx, scales, out_shape, "linear", "asymmetric", "floor")
        return
    # onnxruntime's pre-opset-11 nearest rounds down on growing axes and up on shrinking ones;
    # nearest is separable, so mixed scales become two resizes (shrinking axes first)
    down = [s < 1 for s in scales]
    if any(down) and not all(down[i] or scales[i] == 1 for i in range(len(scales))):
        mid_scales = [s if d else 1.0 for s, d in zip(scales, down)]
        mid_shape = [o if d else i for o, i, d in zip(out_shape, in_shape, down)]
        mid = ctx.emit1("resize", [ctx.input(0)], _resize_attrs(mid_scales, mid_shape, "nearest", "asymmetric", "ceil"))
        up_scales = [1.0 if d else s for s, d in zip(scales, down)]
        ctx.set_output(0, ctx.emit1("resize", [mid], _resize_attrs(up_scales, out_shape, "nearest", "asymmetric",
                                                                    "floor")))
        return
    _emit_resize(ctx, scales, out_shape, "nearest", "asymmetric", "ceil" if any(down) else "floor")


@converter("Upsample", since=7)
def upsample_7(ctx: ConvertContext) -> None:
    ctx.check_attrs({"mode": None, "scales": None})
    scales = ctx.attr("scales")
    _legacy_upsample(ctx, None if scales is None else [float(s) for s in scales])


@converter("Upsample", since=9)
def upsample_9(ctx: ConvertContext) -> None:
    ctx.check_attrs({"mode": None})
    _legacy_upsample(ctx, _const_floats(ctx, 1, "scales"))


@converter("Resize", since=10)
def resize_10(ctx: ConvertContext) -> None:
    ctx.check_attrs({"mode": lambda v: v in ("nearest", "linear")})
    _legacy_upsample(ctx, _const_floats(ctx, 1, "scales"))


_CTM_13 = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize")
_CTM_11 = _CTM_13 + ("tf_half_pixel_for_nn",)      # removed in Resize-13
_CTM_19 = _CTM_13 + ("half_pixel_symmetric",)      # added in Resize-19


def _resize(ctms: tuple[str, ...], with_axes: bool):
    def convert(ctx: ConvertContext) -> None:
        allowed = {"mode": lambda v: v in ("nearest", "linear", "cubic"),
                   "coordinate_transformation_mode": lambda v: v in ctms,
                   "nearest_mode": lambda v: v in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"),
                   "cubic_coeff_a": None, "exclude_outside": None, "extrapolation_value": None}
        if with_axes:
            allowed.update({"antialias": lambda v: int(v) == 0, "axes": None,
                            "keep_aspect_ratio_policy": lambda v: v in ("stretch", "not_larger", "not_smaller")})
        ctx.check_attrs(allowed)
        in_shape = list(ctx.shape(0))
        rank = len(in_shape)
        axes = list(range(rank))
        if with_axes and ctx.attr("axes") is not None:
            axes = [int(a) for a in ctx.attr("axes")]
            if any(not -rank <= a < rank for a in axes):
                ctx.unsupported(f"axes={axes} out of range for rank {rank}")
            axes = [a % rank for a in axes]
            if len(set(axes)) != len(axes):
                ctx.unsupported(f"axes={axes} has repeats")
        ctm = ctx.attr("coordinate_transformation_mode", "half_pixel")
        mode = ctx.attr("mode", "nearest")
        scales_in = _const_floats(ctx, 2, "scales")
        sizes_in = None
        if ctx.has_input(3):
            v = ctx.value(3)
            if v.const is None:
                ctx.unsupported("sizes (input 3) must be a constant; a runtime sizes gives a dynamic output shape")
            if v.const.size:
                sizes_in = [int(d) for d in np.asarray(v.const).reshape(-1)]
        if (scales_in is None) == (sizes_in is None):
            ctx.unsupported("exactly one of scales and sizes must be given")
        given = scales_in if scales_in is not None else sizes_in
        if len(given) != len(axes):
            ctx.unsupported(f"{'scales' if sizes_in is None else 'sizes'} has {len(given)} values for {len(axes)} axes")
        roi = ()
        if ctm == "tf_crop_and_resize":
            roi_in = _const_floats(ctx, 1, "roi")
            if roi_in is None or len(roi_in) != 2 * len(axes):
                ctx.unsupported(f"tf_crop_and_resize needs a constant roi with {2 * len(axes)} values")
            starts, ends = [0.0] * rank, [1.0] * rank
            for k, a in enumerate(axes):
                starts[a], ends[a] = roi_in[k], roi_in[len(axes) + k]
            roi = tuple(starts + ends)
        scales = [1.0] * rank
        out_shape = list(in_shape)
        if scales_in is not None:
            for k, a in enumerate(axes):
                if not scales_in[k] > 0:
                    ctx.unsupported(f"scales {scales_in} must be positive")
                scales[a] = scales_in[k]
                extent = np.float32(roi[rank + a] - roi[a]) if roi else np.float32(1)
                out_shape[a] = int(np.floor(np.float32(in_shape[a]) * extent * np.float32(scales_in[k])))
        else:
            if any(s < 1 for s in sizes_in):
                ctx.unsupported(f"sizes {sizes_in} must be positive")
            policy = ctx.attr("keep_aspect_ratio_policy", "stretch") if with_axes else "stretch"
            # scales in float32, as onnxruntime computes them
            ratios = [np.float32(sizes_in[k]) / np.float32(in_shape[a]) for k, a in enumerate(axes)]
            if policy == "stretch":
                for k, a in enumerate(axes):
                    scales[a] = float(ratios[k])
                    out_shape[a] = sizes_in[k]
            else:
                s = min(ratios) if policy == "not_larger" else max(ratios)
                for a in axes:
                    scales[a] = float(s)
                    out_shape[a] = int(np.floor(s * np.float32(in_shape[a]) + np.float32(0.5)))
        if any(d < 1 for d in out_shape):
            ctx.unsupported(f"the output shape {out_shape} is empty")
        _emit_resize(ctx, scales, out_shape, mode, ctm, ctx.attr("nearest_mode", "round_prefer_floor"),
                     ctx.attr("cubic_coeff_a", -0.75), ctx.attr("exclude_outside", 0),
                     ctx.attr("extrapolation_value", 0.0), roi)
    return convert


converter("Resize", since=11)(_resize(_CTM_11, with_axes=False))
converter("Resize", since=13)(_resize(_CTM_13, with_axes=False))
converter("Resize", since=18)(_resize(_CTM_13, with_axes=True))
converter("Resize", since=19)(_resize(_CTM_19, with_axes=True))


# -- DepthToSpace / SpaceToDepth ---------------------------------------------------------------------
def _blocks(ir_op: str):
    def convert(ctx: ConvertContext) -> None:
        ctx.check_attrs({"blocksize": None, "mode": lambda v: v in ("DCR", "CRD")})
        b = ctx.attr("blocksize")
        if b is None:
            ctx.unsupported("attribute blocksize is required")
        attrs = {"blocksize": int(b), "mode": ctx.attr("mode", "DCR")}
        ctx.set_output(0, ctx.emit1(ir_op, [ctx.input(0)], attrs))
    convert.__name__ = f"convert_{ir_op}"
    return convert


converter("DepthToSpace", since=1)(_blocks("depth_to_space"))
converter("SpaceToDepth", since=1)(_blocks("space_to_depth"))
