"""An ONNX graph as a trainable torch module, and the trained weights written back into the ONNX model.

    module = OnnxModule(model_proto)          # float initializers become nn.Parameters
    outs = module({"features": x})            # dict: every graph output name -> tensor
    logits = module.logits({"features": x})   # the first output, before a final Softmax/LogSoftmax
    trained = module.to_onnx()                # same graph, initializers replaced by the trained values

The module interprets the ONNX nodes in order (the graph is topologically sorted by the ONNX
spec), so the forward is exactly the ONNX graph: before any training, its outputs equal
onnxruntime's up to float rounding. Axis 0 of every graph input is the batch: a Reshape whose
constant shape was frozen for batch 1 (e.g. after ``edgec.prune`` with static shapes) is applied
with the actual batch size. Dropout nodes drop (at their ratio) in training mode and are the
identity in eval mode, as in every training framework; BatchNormalization always uses its stored
statistics (scale and bias train, mean and variance stay fixed).

Supported ops: Gemm, MatMul, Add, Sub, Mul, Div, Relu, LeakyRelu, Sigmoid, Tanh, Softmax,
LogSoftmax, Gather, ReduceMean, ReduceSum, ReduceMax, Flatten, Reshape, Transpose, Squeeze,
Unsqueeze, Concat, Identity, Dropout, Cast, Clip, Conv (1-D and 2-D), BatchNormalization, MaxPool,
AveragePool, GlobalAveragePool, GlobalMaxPool, Constant. Anything else raises
``DistillUnsupportedError`` naming every offending node.

This module imports torch; only ``edgec.distill`` imports it (see ``edgec.distill._torch``).
"""
from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import EdgecError
from ._torch import require_torch

torch = require_torch()
F = torch.nn.functional


class DistillUnsupportedError(EdgecError):
    """The student (or teacher) graph uses an op the torch converter does not implement."""


_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _safe(name: str, used: set) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name) or "p"
    if s[0].isdigit():
        s = "p_" + s
    base, i = s, 1
    while s in used:
        s = f"{base}_{i}"
        i += 1
    used.add(s)
    return s


def _ints(v) -> list[int]:
    return [int(x) for x in v]


class OnnxModule(torch.nn.Module):
    """A torch module computing an ONNX graph, its float initializers trainable (see module doc)."""

    def __init__(self, model: onnx.ModelProto, trainable: bool = True):
        super().__init__()
        self.model = model
        self.opset = _opset(model)
        g = model.graph
        self._check_supported()
        used: set = set()
        self._param_key: dict[str, str] = {}
        self.params = torch.nn.ParameterDict()
        self._consts: dict[str, object] = {}
        self._np_consts: dict[str, np.ndarray] = {}
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            self._np_consts[init.name] = arr
            if init.data_type in _FLOAT_TYPES:
                key = _safe(init.name, used)
                self._param_key[init.name] = key
                self.params[key] = torch.nn.Parameter(torch.from_numpy(np.array(arr, dtype=np.float32)),
                                                      requires_grad=trainable)
            else:
                self._consts[init.name] = torch.from_numpy(np.array(arr))
        for node in g.node:
            if node.op_type == "Constant":
                a = _attrs(node)
                if "value" not in a:
                    raise DistillUnsupportedError(f"Constant node {node.name!r}: only the 'value' attribute is supported")
                arr = numpy_helper.to_array(a["value"])
                self._np_consts[node.output[0]] = arr
                self._consts[node.output[0]] = torch.from_numpy(np.array(arr))
        init_names = {i.name for i in g.initializer}
        self.input_names = [i.name for i in g.input if i.name not in init_names]
        self.output_names = [o.name for o in g.output]
        dims = [i.type.tensor_type.shape.dim for i in g.input if i.name not in init_names]
        self.static_batch = dims[0][0].dim_value if dims and len(dims[0]) and dims[0][0].HasField("dim_value") \
            else None
        producer = {o: n for n in g.node for o in n.output}
        first = producer.get(self.output_names[0])
        # the tensor trained as logits: the first output, or the input of a final (Log)Softmax
        self.logits_name = first.input[0] if first is not None and first.op_type in ("Softmax", "LogSoftmax") \
            else self.output_names[0]

    # ------------------------------------------------------------------ support check
    def _check_supported(self):
        bad = [f"{n.name or '(unnamed)'} ({n.op_type})" for n in self.model.graph.node
               if n.op_type not in _OPS and n.op_type != "Constant" or n.domain not in ("", "ai.onnx")]
        if bad:
            raise DistillUnsupportedError(
                f"the distillation trainer cannot convert {len(bad)} node(s) to torch: {', '.join(bad)}; "
                f"supported ops: {', '.join(sorted(_OPS))}")

    # ------------------------------------------------------------------ running
    def _value(self, env, name):
        if name == "":
            return None
        if name in env:
            return env[name]
        if name in self._param_key:
            return self.params[self._param_key[name]]
        if name in self._consts:
            return self._consts[name]
        raise EdgecError(f"value {name!r} is used before it is produced (graph not topologically sorted?)")

    def _np(self, name) -> np.ndarray | None:
        """A constant input's value as numpy (shapes, axes), or None when it is not constant."""
        return self._np_consts.get(name)

    def run(self, inputs: dict, wanted=None) -> dict:
        env = {}
        for name in self.input_names:
            if name not in inputs:
                raise EdgecError(f"missing model input {name!r} (have {sorted(inputs)})")
            v = inputs[name]
            env[name] = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v))
        for node in self.model.graph.node:
            if node.op_type == "Constant":
                continue
            ins = [self._value(env, n) for n in node.input]
            outs = _OPS[node.op_type](self, node, _attrs(node), ins)
            if not isinstance(outs, (tuple, list)):
                outs = (outs,)
            for name, val in zip(node.output, outs):
                if name:
                    env[name] = val
        names = self.output_names if wanted is None else wanted
        return {n: self._value(env, n) for n in names}

    def forward(self, inputs: dict) -> dict:
        return self.run(inputs)

    def logits(self, inputs: dict):
        return self.run(inputs, [self.logits_name])[self.logits_name]

    # ------------------------------------------------------------------ writing back
    def to_onnx(self) -> onnx.ModelProto:
        """A copy of the ONNX model whose float initializers hold this module's current values
        (same names, dtypes, shapes and graph)."""
        out = onnx.ModelProto()
        out.CopyFrom(self.model)
        for init in out.graph.initializer:
            key = self._param_key.get(init.name)
            if key is None:
                continue
            dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
            arr = self.params[key].detach().cpu().numpy().astype(dtype)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
        return out


# ---------------------------------------------------------------------- op implementations
def _gemm(m, node, a, ins):
    A, B = ins[0], ins[1]
    if a.get("transA", 0):
        A = A.transpose(-1, -2)
    if a.get("transB", 0):
        B = B.transpose(-1, -2)
    y = A @ B
    alpha = float(a.get("alpha", 1.0))
    if alpha != 1.0:
        y = y * alpha
    if len(ins) > 2 and ins[2] is not None:
        beta = float(a.get("beta", 1.0))
        y = y + (ins[2] * beta if beta != 1.0 else ins[2])
    return y


def _axes(m, node, a, ins, since_input: int):
    """Reduce/Squeeze/Unsqueeze axes: an attribute before opset ``since_input``, an input after."""
    if "axes" in a:
        return _ints(a["axes"])
    if len(node.input) > 1 and node.input[1]:
        v = m._np(node.input[1])
        if v is None:
            raise DistillUnsupportedError(f"node {node.name!r} ({node.op_type}): axes must be a constant")
        return _ints(np.asarray(v).reshape(-1))
    return None


def _reduce(fn):
    def op(m, node, a, ins):
        x = ins[0]
        axes = _axes(m, node, a, ins, 18)
        keep = bool(a.get("keepdims", 1))
        if axes is None:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        axes = sorted(ax % x.dim() for ax in axes)
        if fn == "max":
            return torch.amax(x, dim=axes, keepdim=keep)
        if fn == "mean":
            return torch.mean(x, dim=axes, keepdim=keep)
        return torch.sum(x, dim=axes, keepdim=keep)
    return op


def _gather(m, node, a, ins):
    data, idx = ins
    axis = int(a.get("axis", 0)) % data.dim()
    idx = idx.long()
    n = data.shape[axis]
    idx = torch.where(idx < 0, idx + n, idx)
    flat = torch.index_select(data, axis, idx.reshape(-1))
    return flat.reshape(tuple(data.shape[:axis]) + tuple(idx.shape) + tuple(data.shape[axis + 1:]))


def _reshape(m, node, a, ins):
    x = ins[0]
    shape = m._np(node.input[1])
    if shape is None:
        raise DistillUnsupportedError(f"node {node.name!r} (Reshape): the shape must be a constant")
    shape = _ints(np.asarray(shape).reshape(-1))
    allow_zero = bool(a.get("allowzero", 0))
    shape = [x.shape[i] if (s == 0 and not allow_zero) else s for i, s in enumerate(shape)]
    b0 = m.static_batch
    if b0 is not None and shape and x.dim() > 0 and shape[0] == b0 and x.shape[0] != b0:
        # shape frozen for the graph's static batch size: axis 0 is the batch
        shape[0] = x.shape[0]
    return x.reshape(shape)


def _flatten(m, node, a, ins):
    x = ins[0]
    axis = int(a.get("axis", 1)) % (x.dim() + 1) if x.dim() else 0
    lead = int(np.prod(x.shape[:axis])) if axis else 1
    return x.reshape(lead, -1)


def _squeeze(m, node, a, ins):
    x = ins[0]
    axes = _axes(m, node, a, ins, 13)
    if axes is None:
        return x.squeeze()
    for ax in sorted((ax % x.dim() for ax in axes), reverse=True):
        x = x.squeeze(ax)
    return x


def _unsqueeze(m, node, a, ins):
    x = ins[0]
    axes = _axes(m, node, a, ins, 13)
    rank = x.dim() + len(axes)
    for ax in sorted(ax % rank for ax in axes):
        x = x.unsqueeze(ax)
    return x


def _softmax(log):
    def op(m, node, a, ins):
        x = ins[0]
        axis = int(a.get("axis", -1 if m.opset >= 13 else 1))
        if m.opset < 13 and x.dim() > 2:
            shp = x.shape
            ax = axis % x.dim()
            x2 = x.reshape(int(np.prod(shp[:ax])), -1)
            y = F.log_softmax(x2, dim=1) if log else F.softmax(x2, dim=1)
            return y.reshape(shp)
        return F.log_softmax(x, dim=axis) if log else F.softmax(x, dim=axis)
    return op


def _dropout(m, node, a, ins):
    x = ins[0]
    ratio = float(a.get("ratio", 0.5))
    if len(node.input) > 1 and node.input[1]:
        v = m._np(node.input[1])
        if v is not None:
            ratio = float(np.asarray(v).reshape(-1)[0])
    y = F.dropout(x, p=ratio, training=m.training) if ratio > 0 else x
    if len(node.output) > 1:
        return y, torch.ones_like(x, dtype=torch.bool)
    return y


def _cast(m, node, a, ins):
    to = int(a["to"])
    np_t = helper.tensor_dtype_to_np_dtype(to)
    tt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float32,
          np.dtype(np.float16): torch.float32, np.dtype(np.int64): torch.int64,
          np.dtype(np.int32): torch.int32, np.dtype(np.int8): torch.int8, np.dtype(np.uint8): torch.uint8,
          np.dtype(np.bool_): torch.bool}.get(np.dtype(np_t))
    if tt is None:
        raise DistillUnsupportedError(f"node {node.name!r} (Cast): target type {np_t} not supported")
    return ins[0].to(tt)


def _clip(m, node, a, ins):
    x = ins[0]
    lo = a.get("min") if "min" in a else (ins[1] if len(ins) > 1 else None)
    hi = a.get("max") if "max" in a else (ins[2] if len(ins) > 2 else None)
    if lo is not None:
        x = torch.maximum(x, torch.as_tensor(lo, dtype=x.dtype))
    if hi is not None:
        x = torch.minimum(x, torch.as_tensor(hi, dtype=x.dtype))
    return x


def _pads(node, a, nd):
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise DistillUnsupportedError(f"node {node.name!r} ({node.op_type}): auto_pad is not supported; "
                                      f"use explicit pads")
    pads = _ints(a.get("pads", [0] * (2 * nd)))
    return pads[:nd], pads[nd:]


def _pad_input(x, begin, end, value=0.0):
    if begin == end:
        return x, list(begin)
    flat = []
    for b, e in zip(reversed(begin), reversed(end)):
        flat += [b, e]
    return F.pad(x, flat, value=value), [0] * len(begin)


def _conv(m, node, a, ins):
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    nd = w.dim() - 2
    if nd not in (1, 2):
        raise DistillUnsupportedError(f"node {node.name!r} (Conv): only 1-D and 2-D convolutions are supported")
    begin, end = _pads(node, a, nd)
    x, pad = _pad_input(x, begin, end)
    strides = _ints(a.get("strides", [1] * nd))
    dil = _ints(a.get("dilations", [1] * nd))
    group = int(a.get("group", 1))
    fn = F.conv1d if nd == 1 else F.conv2d
    return fn(x, w, b, stride=strides, padding=pad, dilation=dil, groups=group)


def _pool(kind):
    def op(m, node, a, ins):
        x = ins[0]
        nd = x.dim() - 2
        k = _ints(a["kernel_shape"])
        strides = _ints(a.get("strides", [1] * nd))
        begin, end = _pads(node, a, nd)
        if int(a.get("ceil_mode", 0)):
            raise DistillUnsupportedError(f"node {node.name!r} ({node.op_type}): ceil_mode is not supported")
        if kind == "max":
            x, pad = _pad_input(x, begin, end, value=float("-inf"))
            fn = F.max_pool1d if nd == 1 else F.max_pool2d
            return fn(x, k, strides, pad, dilation=_ints(a.get("dilations", [1] * nd)))
        x, pad = _pad_input(x, begin, end)
        fn = F.avg_pool1d if nd == 1 else F.avg_pool2d
        return fn(x, k, strides, pad, count_include_pad=bool(a.get("count_include_pad", 0)))
    return op


def _batchnorm(m, node, a, ins):
    x, scale, bias, mean, var = ins[:5]
    return F.batch_norm(x, mean.detach(), var.detach(), scale, bias, training=False,
                        eps=float(a.get("epsilon", 1e-5)))


def _concat(m, node, a, ins):
    return torch.cat([t for t in ins if t is not None], dim=int(a["axis"]))


def _transpose(m, node, a, ins):
    x = ins[0]
    perm = _ints(a["perm"]) if "perm" in a else list(range(x.dim()))[::-1]
    return x.permute(perm)


_OPS = {
    "Gemm": _gemm,
    "MatMul": lambda m, n, a, i: torch.matmul(i[0], i[1]),
    "Add": lambda m, n, a, i: i[0] + i[1],
    "Sub": lambda m, n, a, i: i[0] - i[1],
    "Mul": lambda m, n, a, i: i[0] * i[1],
    "Div": lambda m, n, a, i: i[0] / i[1],
    "Relu": lambda m, n, a, i: F.relu(i[0]),
    "LeakyRelu": lambda m, n, a, i: F.leaky_relu(i[0], float(a.get("alpha", 0.01))),
    "Sigmoid": lambda m, n, a, i: torch.sigmoid(i[0]),
    "Tanh": lambda m, n, a, i: torch.tanh(i[0]),
    "Softmax": _softmax(False),
    "LogSoftmax": _softmax(True),
    "Gather": _gather,
    "ReduceMean": _reduce("mean"),
    "ReduceSum": _reduce("sum"),
    "ReduceMax": _reduce("max"),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": _concat,
    "Identity": lambda m, n, a, i: i[0],
    "Dropout": _dropout,
    "Cast": _cast,
    "Clip": _clip,
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda m, n, a, i: torch.mean(i[0], dim=tuple(range(2, i[0].dim())), keepdim=True),
    "GlobalMaxPool": lambda m, n, a, i: torch.amax(i[0], dim=tuple(range(2, i[0].dim())), keepdim=True),
}
