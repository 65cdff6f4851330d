"""edgec int8 IR -> QDQ ONNX: the quantized graph as a standard ONNX model that onnxruntime (or any
ONNX tool) runs, computing what edgec computes within one quantum of every output scale.

    proto = export_qdq("out/", "model_int8.onnx")        # an artifact of `edgec compile --quantize int8`
    proto = export_qdq(qgraph, "model_int8.onnx")        # or the Graph quantize_int8 returned
    edgec export-qdq out/ model_int8.onnx                # the CLI

Where the graph comes from: an artifact folder does not keep op attributes (multipliers, zero
points, lookup tables are compiled into the kernels), so ``compile --quantize int8`` also saves the
quantized IR next to the blob (``IR_FILE``, written by ``save_ir``, read back by ``load_ir``): one
.npz holding a JSON description (nodes, attributes, values with their qparams, graph meta) and one
array per constant. No pickle; floats round-trip exactly.

The mapping (docs/quantization.md, "QDQ export"): every integer activation stays an integer
tensor under its IR name; an integer op becomes the QDQ "node unit" onnxruntime fuses into its
own integer kernels (DequantizeLinear on each input, the float op, QuantizeLinear):

    qconv    DQ(x), DQ(w int8, per-axis scales), DQ(int32 bias, s_x*s_w) -> Conv -> [Relu|Clip] -> Q
             (a fused hard swish, ``act="hard_swish"``: Conv -> HardSwish -> Q)
    qdense   same, Gemm(transB=1)           qmatmul  DQ(a), DQ(b) -> MatMul -> [clamp] -> Q
    qadd     DQ(a), DQ(b) -> Add -> [clamp] -> Q      qmul  the same with Mul
    qlut     DQ -> the original float op -> Q when that op (from meta["quantization"]["layers"])
             with its default attributes reproduces the table exactly; else the table itself:
             Gather(table, Cast<int32>(x)) (rotated by 128 for int8 inputs: negative indices wrap)
    requantize           DQ(x, s_in, z_in) -> [clamp] -> Q(s_out, z_out)
    qglobal_avg_pool     DQ -> GlobalAveragePool -> [clamp] -> Q (also cast+reduce_sum+requantize,
                         the pass's form before session 7, in saved IR files)
    quantize / dequantize                                    QuantizeLinear / DequantizeLinear
    reshape, transpose, concat, slice, split, max_pool, clip, gather, depth/space_to_... on
    integers: the same ONNX op on the integer tensor (exact); global_max_pool: ReduceMax
    int32-output qconv/qdense/qmatmul (identity requantization: imported ConvInteger /
    MatMulInteger, the pass's window sums): ConvInteger / MatMulInteger + int32 Add (exact)
    qdense_dequant       MatMulInteger + int32 Add of the bias + DequantizeLinear of the int32
                         accumulator (scale s_x * s_w[c] per axis 1, zero point 0): exact
    cast, reduce_sum, mul on int32 and float nodes: edgec.frontend.onnx_export (the fp32 exporter)

qparams of an integer value come from ``Value.qparams`` (the quantization pass sets them on every
integer value), else from a quantize producer or a dequantize consumer, looking through ops that
only move integers. A weight without qparams (an imported QLinearConv) gets its scales back from
the multipliers, ``s_w[c] = M[c] * s_out / s_x``.

The zero-point fold is undone: qconv/qdense carry ``b' = b_q - z_x * sum_k w_q[c, k]`` so that
the kernel is a pure dot product, whereas DQ(x) subtracts z_x itself; the exported bias is
``b' + z_x * sum_k w_q[c, k]``. A fused ReLU/Clip (the output clamp ``[qmin, qmax]``) becomes a
Relu (``qmin == z_out``) or a Clip at ``s_out * (qmin - z_out)``, ``s_out * (qmax - z_out)``: since
QuantizeLinear is monotone and those bounds quantize exactly to qmin/qmax, Q(clamp(y)) equals
clamp(Q(y)).

Why "within one quantum" and not bit-exact: edgec requantizes in fixed point with one rounding
half away from zero; onnxruntime requantizes in float32 with round half to even (and, with its
graph optimizations off, also sums the dequantized products in float32). Both are within half a
quantum of the exact value, so they differ by at most one, and only near rounding ties.

Opset 20, onnx.checker clean. Errors are ``QdqExportError`` subclasses.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgecError
from ..ir.graph import Graph, Node, QParams, Value, freeze_attrs
from .onnx_export import OPSET, OnnxExportError, _UNARY, _UNARY_ATTRS, _Writer, _write_node

IR_FILE = "quantized_graph.npz"
IR_FORMAT = "edgec-ir"
IR_VERSION = 1

QUANT_OPS = frozenset({"quantize", "dequantize", "requantize", "qconv", "qdense", "qdense_dequant", "qmatmul", "qadd",
                       "qmul", "qlut", "qglobal_avg_pool"})
_INT8 = ("uint8", "int8")
_IDENTITY = (2 ** 30, 1)     # quantize_multiplier(1.0): the exact identity requantization
# ops that only move or select integers: their 8-bit input and output share the qparams
_MOVE_OPS = frozenset({"reshape", "transpose", "max_pool", "global_max_pool", "slice", "split", "depth_to_space",
                       "space_to_depth", "concat", "clip", "gather", "copy", "expand", "tile"})


class QdqExportError(EdgecError):
    """The graph cannot be written as QDQ ONNX (an op without a mapping, missing qparams, ...)."""


class NotAnArtifactError(QdqExportError):
    """The source is not an edgec artifact folder, or one without the quantized IR."""


class NotQuantizedError(QdqExportError):
    """The source graph or artifact is not quantized (no integer ops)."""


class IRFileError(QdqExportError):
    """A saved IR file is missing, corrupt or of another format version."""


# -- the quantized IR in an artifact ----------------------------------------------------------------

def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return v


def save_ir(graph: Graph, path: str | os.PathLike) -> Path:
    """Write ``graph`` (nodes, attributes, values, qparams, constants, JSON-able meta) to one .npz,
    atomically (a temporary file renamed into place)."""
    path = Path(path)
    consts: dict[str, np.ndarray] = {}
    values = []
    for v in graph.values.values():
        d: dict[str, Any] = {"name": v.name, "dtype": v.dtype, "shape": list(v.shape)}
        if v.const is not None:
            d["const"] = f"c{len(consts)}"
            consts[d["const"]] = np.ascontiguousarray(v.const)
        if v.qparams is not None:
            d["qparams"] = {"scale": [float(s) for s in v.qparams.scale],
                            "zero_point": [int(z) for z in v.qparams.zero_point], "axis": v.qparams.axis}
        values.append(d)
    nodes = [{"op": n.op, "name": n.name, "inputs": list(n.inputs), "outputs": list(n.outputs),
              "attrs": {k: _jsonable(a) for k, a in n.attrs.items()}} for n in graph.nodes]
    meta = {}
    for k, m in graph.meta.items():   # meta is free-form: keep what JSON can hold
        try:
            json.dumps(_jsonable(m))
        except (TypeError, ValueError):
            continue
        meta[str(k)] = _jsonable(m)
    doc = {"format": IR_FORMAT, "version": IR_VERSION, "name": graph.name, "inputs": list(graph.inputs),
           "outputs": list(graph.outputs), "values": values, "nodes": nodes, "meta": meta}
    blob = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, __graph__=blob, **consts)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_ir(path: str | os.PathLike) -> Graph:
    """Read a graph written by ``save_ir`` (checked with edgec.ir.verify)."""
    from ..ir.verify import verify
    path = Path(path)
    if not path.is_file():
        raise IRFileError(f"{path}: no such IR file")
    try:
        with np.load(path, allow_pickle=False) as z:
            doc = json.loads(bytes(z["__graph__"]).decode("utf-8"))
            if doc.get("format") != IR_FORMAT or doc.get("version") != IR_VERSION:
                raise IRFileError(f"{path}: not an {IR_FORMAT} v{IR_VERSION} file "
                                  f"(format {doc.get('format')!r}, version {doc.get('version')!r})")
            values = {}
            for d in doc["values"]:
                const = None
                if "const" in d:
                    const = np.array(z[d["const"]])
                    const.setflags(write=False)
                q = d.get("qparams")
                qp = QParams(tuple(q["scale"]), tuple(q["zero_point"]), q["axis"]) if q else None
                values[d["name"]] = Value(d["name"], d["dtype"], tuple(d["shape"]), const=const, qparams=qp)
            nodes = [Node(n["op"], tuple(n["inputs"]), tuple(n["outputs"]), freeze_attrs(n["attrs"]), n["name"])
                     for n in doc["nodes"]]
            g = Graph(nodes, values, list(doc["inputs"]), list(doc["outputs"]), doc["name"], dict(doc["meta"]))
    except IRFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IRFileError(f"{path}: cannot read the IR file: {type(e).__name__}: {e}") from None
    try:
        verify(g)
    except EdgecError as e:
        raise IRFileError(f"{path}: the saved graph is invalid: {e}") from None
    return g


def load_quantized_graph(source) -> Graph:
    """The quantized Graph of ``source``: a Graph (returned as is) or an artifact folder."""
    if isinstance(source, Graph):
        g = source
    elif isinstance(source, (str, os.PathLike)):
        d = Path(source)
        if not d.is_dir() or not (d / "manifest.json").is_file():
            raise NotAnArtifactError(f"{d} is not an edgec artifact folder (no manifest.json); give the output "
                                     "folder of `edgec compile --quantize int8`")
        try:
            manifest = json.loads((d / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise NotAnArtifactError(f"{d}/manifest.json cannot be read: {e}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != "edgec-artifact":
            raise NotAnArtifactError(f"{d}/manifest.json is not an edgec artifact manifest")
        ir_name = (manifest.get("files") or {}).get("ir") or IR_FILE
        if not isinstance(ir_name, str) or Path(ir_name).name != ir_name:
            raise NotAnArtifactError(f"{d}/manifest.json: files.ir must be a file name in the folder, got {ir_name!r}")
        if not (d / ir_name).is_file():
            quantized = False
            try:
                quantized = "quantization" in json.loads((d / "report.json").read_text())
            except (OSError, ValueError):
                pass
            if not quantized:
                raise NotQuantizedError(f"{d} is not a quantized artifact: compile with `--quantize int8 --calib ...`")
            raise NotAnArtifactError(f"{d} holds no quantized IR ({ir_name}): it was compiled by an edgec that did "
                                     "not save it; compile it again to export it")
        g = load_ir(d / ir_name)
    else:
        raise QdqExportError(f"export_qdq source must be an artifact folder or an edgec Graph, "
                             f"got {type(source).__name__}")
    if not any(n.op in QUANT_OPS for n in g.nodes):
        raise NotQuantizedError(f"graph {g.name!r} is not quantized (no int8 ops): quantize it first "
                                "(edgec compile --quantize int8, or edgec.passes.quantize_int8)")
    return g


# -- the exporter ------------------------------------------------------------------------------------

def _tuple(v) -> tuple:
    return v if isinstance(v, tuple) else (v,)


def _qrange(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


class _Exporter:
    def __init__(self, graph: Graph, lut: str):
        self.g = graph
        self.w = _Writer(graph)
        self.lut = lut
        self.prod = graph.producers()
        self.cons = graph.consumers()
        self.skip: set[int] = set()
        self.gap: dict[int, str] = {}     # id(requantize node) -> the 8-bit value its avg pool reads
        self.orig_op = {layer["node"]: layer["op"] for layer in
                        (graph.meta.get("quantization") or {}).get("layers", []) if isinstance(layer, dict)}

    # -- qparams of integer values ------------------------------------------------------------
    def qparams(self, name: str, what: str = "") -> tuple[np.ndarray, np.ndarray, int | None]:
        """(scales float32, zero points, axis) of integer value ``name``: its Value.qparams, else
        from the quantize node producing it or a dequantize node reading it, looking through ops
        that only move integers (reshape, transpose, max_pool, concat, ...: same qparams in and out)."""
        found = self._find_qparams(name, set())
        if found is None:
            raise QdqExportError(f"integer value {name!r}{what} has no quantization parameters (no qparams, "
                                 "no quantize producer, no dequantize consumer)")
        return found

    def _find_qparams(self, name: str, seen: set):
        if name in seen or name not in self.g.values:
            return None
        seen.add(name)
        v = self.g.values[name]
        if v.qparams is not None:
            q = v.qparams
            return np.asarray(q.scale, np.float32), np.asarray(q.zero_point, np.int64), q.axis
        p = self.prod.get(name)
        if p is not None and p.op == "quantize":
            return (np.asarray(_tuple(p.attrs["scale"]), np.float32), np.asarray(_tuple(p.attrs["zero_point"]), np.int64),
                    p.attrs["axis"])
        for c in self.cons.get(name, []):
            if c.op == "dequantize":
                return (np.asarray(_tuple(c.attrs["scale"]), np.float32),
                        np.asarray(_tuple(c.attrs["zero_point"]), np.int64), c.attrs["axis"])
        if v.dtype not in _INT8:
            return None
        near = []
        if p is not None and p.op in _MOVE_OPS:
            near += [i for i in (p.inputs if p.op == "concat" else p.inputs[:1]) if i]
        for c in self.cons.get(name, []):
            if c.op in _MOVE_OPS and (c.op == "concat" or c.inputs[0] == name):
                near += list(c.outputs)
        for other in near:
            if self.g.values[other].dtype == v.dtype:
                found = self._find_qparams(other, seen)
                if found is not None and found[0].size == 1:
                    return found
        return None

    def act(self, name: str, what: str = "") -> tuple[float, int]:
        s, z, axis = self.qparams(name, what)
        if s.size != 1 or z.size != 1:
            raise QdqExportError(f"activation {name!r}{what} is quantized per axis; edgec's int8 ops take "
                                 "per-tensor activations")
        return float(s[0]), int(z[0])

    # -- building blocks ----------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        return self.w.names(base)

    def dq(self, x: str, scale, zp, axis: int | None, base: str, dtype: str | None = None,
           out: str | None = None) -> str:
        """DequantizeLinear(x) -> ``out`` or a fresh float value (int32 inputs with a zero point: Sub first)."""
        dt = dtype or self.g.values[x].dtype
        scale = np.asarray(scale, np.float32).reshape(-1)
        zp = np.asarray(zp, np.int64).reshape(-1)
        if scale.size > 1 and np.all(scale == scale[0]) and np.all(zp == zp[0]):
            scale, zp = scale[:1], zp[:1]
        per_axis = scale.size > 1 or zp.size > 1
        if per_axis and zp.size == 1:
            zp = np.full(scale.size, zp[0], np.int64)
        if per_axis and scale.size == 1:
            scale = np.full(zp.size, scale[0], np.float32)
        sc = self.w.const(f"{base}_scale", scale if per_axis else scale[0])
        out = out or self.fresh(f"{base}_dq")
        extra = {"axis": int(axis)} if per_axis else {}
        if dt == "int32":
            if np.any(zp != 0):
                if per_axis:
                    raise QdqExportError(f"{x!r}: per-axis int32 zero points are not exportable")
                sub = self.fresh(f"{x}_minus_zp")
                self.w.emit("Sub", [x, self.w.const(f"{base}_zp", np.asarray(zp[0], np.int32))], [sub], f"{base}_sub")
                x = sub
            self.w.emit("DequantizeLinear", [x, sc], [out], f"{base}_DequantizeLinear", **extra)
            return out
        zc = self.w.const(f"{base}_zero_point", (zp if per_axis else zp[0]).astype(dt))
        self.w.emit("DequantizeLinear", [x, sc, zc], [out], f"{base}_DequantizeLinear", **extra)
        return out

    def q(self, f: str, out: str, scale: float, zp: int, dtype: str, base: str) -> None:
        sc = self.w.const(f"{base}_scale", np.float32(scale))
        zc = self.w.const(f"{base}_zero_point", np.asarray(zp, dtype))
        self.w.emit("QuantizeLinear", [f, sc, zc], [out], f"{base}_QuantizeLinear")

    def clamp(self, f: str, qmin: int, qmax: int, s: float, z: int, dtype: str, base: str) -> str:
        """The float form of the integer output clamp [qmin, qmax] (before Q; exact, see module doc)."""
        lo, hi = _qrange(dtype)
        if qmin <= lo and qmax >= hi:
            return f
        out = self.fresh(f"{base}_act")
        if qmin == z and qmax >= hi:
            self.w.emit("Relu", [f], [out], f"{base}_Relu")
            return out
        mn = self.w.const(f"{base}_clip_min", np.float32(s) * np.float32(qmin - z)) if qmin > lo else ""
        mx = self.w.const(f"{base}_clip_max", np.float32(s) * np.float32(qmax - z)) if qmax < hi else ""
        self.w.emit("Clip", [f, mn, mx] if mx else [f, mn], [out], f"{base}_Clip")
        return out

    def out_q(self, n: Node) -> tuple[float, int, str]:
        o = n.outputs[0]
        s, z = self.act(o, f" (output of {n.name!r})")
        return s, z, self.g.values[o].dtype

    # -- node units ---------------------------------------------------------------------------
    def linear(self, n: Node) -> None:
        a = n.attrs
        x, wname = n.inputs[0], n.inputs[1]
        bname = n.inputs[2] if len(n.inputs) > 2 else ""
        base = n.name or n.outputs[0]
        if a["out_dtype"] == "int32":
            return self.linear_int32(n)
        s_x, z_x = self.act(x, f" (input of {n.name!r})")
        if z_x != a["x_zero_point"]:
            raise QdqExportError(f"node {n.name!r}: x_zero_point {a['x_zero_point']} differs from the zero point "
                                 f"{z_x} of its input {x!r}")
        s_o, z_o, odt = self.out_q(n)
        wv = self.g.values[wname]
        if wv.const is None:
            raise QdqExportError(f"node {n.name!r}: the weight {wname!r} is not a constant")
        wq = wv.const
        m = wq.shape[0]
        if wv.qparams is not None:
            s_w = np.asarray(wv.qparams.scale, np.float32)
            if np.any(np.asarray(wv.qparams.zero_point) != 0):
                raise QdqExportError(f"node {n.name!r}: weight {wname!r} has a non-zero zero point")
            if s_w.size == 1:
                s_w = np.full(m, s_w[0], np.float32)
        else:   # an imported graph: the weight scale from the multipliers, M[c] = s_x * s_w[c] / s_o
            from ..quant.qmath import multiplier_value
            mults = [multiplier_value(mm, sh) for mm, sh in zip(_tuple(a["multiplier"]), _tuple(a["shift"]))]
            h_unit = 2.0 ** -int(a.get("act_frac_bits", 0)) if a.get("act", "none") != "none" else s_o
            s_w = np.asarray([mm * h_unit / s_x for mm in mults], np.float64).astype(np.float32)
            if s_w.size == 1:
                s_w = np.full(m, s_w[0], np.float32)
        if s_w.size != m:
            raise QdqExportError(f"node {n.name!r}: {s_w.size} weight scales for {m} output channels")
        xf = self.dq(x, s_x, z_x, None, f"{base}_x")
        wf = self.dq(wname, s_w, np.zeros(m, np.int64), 0, f"{base}_w")
        ins = [xf, wf]
        wsum = wq.astype(np.int64).reshape(m, -1).sum(axis=1)
        bias = self.g.values[bname].const.astype(np.int64) if bname else np.zeros(m, np.int64)
        if bname and self.g.values[bname].const is None:
            raise QdqExportError(f"node {n.name!r}: the bias {bname!r} is not a constant")
        b_q = bias + int(z_x) * wsum       # undo the zero-point fold: DQ(x) subtracts z_x itself
        if np.any(np.abs(b_q) > 2 ** 31 - 1):
            raise QdqExportError(f"node {n.name!r}: the unfolded bias does not fit int32")
        if bname or np.any(b_q != 0):
            bc = self.w.const(f"{base}_bias_q", b_q.astype(np.int32))
            s_b = np.float32(s_x) * s_w      # the float32 product, as quantize_bias and onnxruntime
            ins.append(self.dq(bc, s_b, np.zeros(m, np.int64), 0, f"{base}_bias", dtype="int32"))
        y = self.fresh(f"{base}_y")
        if n.op == "qconv":
            self.w.emit("Conv", ins, [y], base, kernel_shape=list(wq.shape[2:]), strides=list(a["strides"]),
                        pads=list(a["pads"]), dilations=list(a["dilations"]), group=int(a["group"]))
        else:
            self.w.emit("Gemm", ins, [y], base, transB=1)
        if a.get("act", "none") == "hard_swish":
            # the fused hard swish (edgec: in fixed point, one final rounding): HardSwish in float
            hs = self.fresh(f"{base}_hard_swish")
            self.w.emit("HardSwish", [y], [hs], f"{base}_HardSwish")
            y = hs
        y = self.clamp(y, a["qmin"], a["qmax"], s_o, z_o, odt, base)
        self.q(y, n.outputs[0], s_o, z_o, odt, base)

    def linear_int32(self, n: Node) -> None:
        """An int32-output qconv/qdense/qmatmul (an imported ConvInteger/MatMulInteger, a sum over
        pooling windows): ConvInteger/MatMulInteger (exact, padding with the x zero point), the
        unfolded bias added in int32, the clamp as an int32 Clip. Only the identity requantization
        (multiplier 2^30, shift 1, zero point 0) has this form."""
        a = n.attrs
        base = n.name or n.outputs[0]
        dequant = n.op == "qdense_dequant"
        if not dequant and (any((int(m), int(sh)) != _IDENTITY for m, sh in zip(_tuple(a["multiplier"]),
                                                                                _tuple(a["shift"])))
                            or a["out_zero_point"] != 0):
            raise QdqExportError(f"node {n.name!r} ({n.op}): an int32 output with a requantization other than "
                                 "the identity has no ONNX form")
        x = n.inputs[0]
        xdt = self.g.values[x].dtype
        if n.op == "qmatmul":
            bdt = self.g.values[n.inputs[1]].dtype
            ins = [x, n.inputs[1], self.w.const(f"{base}_a_zero_point", np.asarray(a["a_zero_point"], xdt)),
                   self.w.const(f"{base}_b_zero_point", np.asarray(a["b_zero_point"], bdt))]
            bias = None
        else:
            wname = n.inputs[1]
            wv = self.g.values[wname]
            if wv.const is None:
                raise QdqExportError(f"node {n.name!r}: the weight {wname!r} is not a constant")
            m = wv.shape[0]
            z_x = int(a["x_zero_point"])
            wsum = wv.const.astype(np.int64).reshape(m, -1).sum(axis=1)
            bname = n.inputs[2] if len(n.inputs) > 2 else ""
            bias = (self.g.values[bname].const.astype(np.int64) if bname else np.zeros(m, np.int64)) + z_x * wsum
            if np.any(np.abs(bias) > 2 ** 31 - 1):
                raise QdqExportError(f"node {n.name!r}: the unfolded bias does not fit int32")
            zc = self.w.const(f"{base}_x_zero_point", np.asarray(z_x, xdt))
            if n.op == "qconv":
                ins = [x, wname, zc]
                bias = bias.reshape((1, m) + (1,) * (len(wv.shape) - 2))
            else:
                ins = [x, self.w.const(f"{wname}_t", np.ascontiguousarray(wv.const.T)), zc]
        lo, hi = _qrange("int32")
        clamp = not dequant and (a["qmin"] > lo or a["qmax"] < hi)
        has_bias = bias is not None and bool(np.any(bias != 0))
        final = self.fresh(f"{base}_int32") if dequant else n.outputs[0]
        acc = self.fresh(f"{base}_acc") if (has_bias or clamp) else final
        if n.op == "qconv":
            wv = self.g.values[n.inputs[1]]
            self.w.emit("ConvInteger", ins, [acc], base, kernel_shape=list(wv.shape[2:]), strides=list(a["strides"]),
                        pads=list(a["pads"]), dilations=list(a["dilations"]), group=int(a["group"]))
        else:
            self.w.emit("MatMulInteger", ins, [acc], base)
        if has_bias:
            out = self.fresh(f"{base}_biased") if clamp else final
            self.w.emit("Add", [acc, self.w.const(f"{base}_bias_q", bias.astype(np.int32))], [out], f"{base}_bias")
            acc = out
        if clamp:
            self.w.emit("Clip", [acc, self.w.const(f"{base}_qmin", np.int32(a["qmin"])),
                                 self.w.const(f"{base}_qmax", np.int32(a["qmax"]))], [n.outputs[0]], f"{base}_clamp")
        if dequant:
            # the int32 accumulator times s_x * s_w[c]: DequantizeLinear per axis 1, zero point 0
            # (exactly float32(acc) * scale[c], the kernel's epilogue)
            self.dq(final, np.asarray(_tuple(a["scale"]), np.float32), 0, 1, base, dtype="int32", out=n.outputs[0])

    def binary(self, n: Node, op_type: str) -> None:
        a = n.attrs
        base = n.name or n.outputs[0]
        fs = []
        for k, (i, zattr) in enumerate(zip(n.inputs, ("a_zero_point", "b_zero_point"))):
            s, z = self.act(i, f" (input of {n.name!r})")
            if z != a[zattr]:
                raise QdqExportError(f"node {n.name!r}: {zattr} {a[zattr]} differs from the zero point {z} of {i!r}")
            fs.append(self.dq(i, s, z, None, f"{base}_{'ab'[k]}"))
        s_o, z_o, odt = self.out_q(n)
        y = self.fresh(f"{base}_y")
        self.w.emit(op_type, fs, [y], base)
        y = self.clamp(y, a["qmin"], a["qmax"], s_o, z_o, odt, base)
        self.q(y, n.outputs[0], s_o, z_o, odt, base)

    def requantize(self, n: Node) -> None:
        a = n.attrs
        base = n.name or n.outputs[0]
        s_o, z_o, odt = self.out_q(n)
        if id(n) in self.gap:      # cast -> reduce_sum -> requantize: the pass's global_avg_pool
            x = self.gap[id(n)]
            s, z = self.act(x, f" (input of {n.name!r})")
            y = self.fresh(f"{base}_y")
            self.w.emit("GlobalAveragePool", [self.dq(x, s, z, None, f"{base}_x")], [y], base)
        else:
            x = n.inputs[0]
            s_in = self.input_scale(n, x, a["in_zero_point"], 1, s_o, int8=self.g.values[x].dtype in _INT8)
            y = self.dq(x, s_in, a["in_zero_point"], None, f"{base}_x")
        y = self.clamp(y, a["qmin"], a["qmax"], s_o, z_o, odt, base)
        self.q(y, n.outputs[0], s_o, z_o, odt, base)

    def input_scale(self, n: Node, x: str, zp: int, count: int, s_o: float, int8: bool = True) -> float:
        """The scale of a requantizing node's input ``x`` (multiplier m = s_x / (count s_y)): the
        input's own when it is the one the multiplier was made of (and ``zp`` its zero point),
        else the scale the multiplier implies, m * count * s_y."""
        from ..quant.qmath import multiplier_value
        m = multiplier_value(_tuple(n.attrs["multiplier"])[0], _tuple(n.attrs["shift"])[0])
        if int8:
            try:
                s_in, z_in = self.act(x)
            except QdqExportError:
                pass
            else:
                if z_in == zp and abs(s_in / (count * s_o) - m) <= 1e-6 * m:
                    return s_in
        return float(np.float32(m * count * s_o))

    def global_avg_pool(self, n: Node) -> None:
        """qglobal_avg_pool: DQ(x) -> GlobalAveragePool -> [clamp] -> Q. The input's own scale when
        the multiplier was made of it (s_x / (count s_y)), else the scale the multiplier implies."""
        a = n.attrs
        base = n.name or n.outputs[0]
        s_o, z_o, odt = self.out_q(n)
        x = n.inputs[0]
        s_in = self.input_scale(n, x, a["x_zero_point"], int(np.prod(self.g.values[x].shape[2:])), s_o)
        y = self.fresh(f"{base}_y")
        self.w.emit("GlobalAveragePool", [self.dq(x, s_in, a["x_zero_point"], None, f"{base}_x")], [y], base)
        y = self.clamp(y, a["qmin"], a["qmax"], s_o, z_o, odt, base)
        self.q(y, n.outputs[0], s_o, z_o, odt, base)

    def lut_float_op(self, n: Node) -> str | None:
        """The original unary op whose default-attribute table is exactly this qlut's, or None."""
        from ..ir.ops import get as get_op
        from ..quant.qmath import dequantize, quantize
        op = self.orig_op.get(n.name)
        if op is None or (op not in _UNARY and op not in _UNARY_ATTRS):
            return None
        x, o = n.inputs[0], n.outputs[0]
        try:
            s_i, z_i = self.act(x)
            s_o, z_o = self.act(o)
        except QdqExportError:
            return None
        idt = self.g.values[x].dtype
        lo = _qrange(idt)[0]
        opdef = get_op(op)
        real = dequantize(np.arange(lo, lo + 256).astype(idt), s_i, z_i)
        try:
            (fy,) = opdef.reference(real, **opdef.normalize_attrs({}))
        except (TypeError, ValueError):
            return None
        table = quantize(fy, s_o, z_o, n.attrs["out_dtype"])
        return op if np.array_equal(table.astype(np.int64), np.asarray(n.attrs["table"], np.int64)) else None

    def qlut(self, n: Node) -> None:
        from ..ir.ops import get as get_op
        base = n.name or n.outputs[0]
        x, o = n.inputs[0], n.outputs[0]
        op = self.lut_float_op(n) if self.lut == "auto" else None
        if op is not None:
            s_i, z_i = self.act(x)
            s_o, z_o, odt = self.out_q(n)
            xf = self.dq(x, s_i, z_i, None, f"{base}_x")
            y = self.fresh(f"{base}_y")
            _write_node(self.w, Node(op, (xf,), (y,), get_op(op).normalize_attrs({}), base))
            self.q(y, o, s_o, z_o, odt, base)
            return
        idt = self.g.values[x].dtype
        table = np.asarray(n.attrs["table"], np.int64).astype(n.attrs["out_dtype"])
        if _qrange(idt)[0] < 0:   # int8 index i: table[i + 128]; Gather reads index -k as entry 256 - k
            table = np.roll(table, -128)
        tc = self.w.const(f"{base}_table", table)
        idx = self.fresh(f"{x}_i32")
        self.w.emit("Cast", [x], [idx], f"{base}_Cast", to=6)   # TensorProto.INT32
        self.w.emit("Gather", [tc, idx], [o], base, axis=0)

    def quantize(self, n: Node) -> None:
        a = n.attrs
        base = n.name or n.outputs[0]
        dt = self.g.values[n.outputs[0]].dtype
        scale, zp = np.asarray(_tuple(a["scale"]), np.float32), np.asarray(_tuple(a["zero_point"]), np.int64)
        per_axis = a["axis"] is not None
        if per_axis:
            size = self.g.values[n.inputs[0]].shape[a["axis"]]
            scale = np.broadcast_to(scale, (size,)).copy()
            zp = np.broadcast_to(zp, (size,)).copy()
        sc = self.w.const(f"{base}_scale", scale if per_axis else scale[0])
        zc = self.w.const(f"{base}_zero_point", (zp if per_axis else zp[0]).astype(dt))
        self.w.emit("QuantizeLinear", [n.inputs[0], sc, zc], [n.outputs[0]], base,
                    **({"axis": int(a["axis"])} if per_axis else {}))

    def dequantize(self, n: Node) -> None:
        a = n.attrs
        base = n.name or n.outputs[0]
        self.dq(n.inputs[0], _tuple(a["scale"]), _tuple(a["zero_point"]), a["axis"], base, out=n.outputs[0])

    # -- driver -------------------------------------------------------------------------------
    def find_avg_pools(self) -> None:
        """requantize(reduce_sum(cast<int32>(x8), spatial axes, keepdims)) with private intermediates."""
        for n in self.g.nodes:
            if n.op != "requantize":
                continue
            rs = self.prod.get(n.inputs[0])
            if rs is None or rs.op != "reduce_sum" or len(self.cons.get(rs.outputs[0], [])) != 1:
                continue
            cast = self.prod.get(rs.inputs[0])
            if cast is None or cast.op != "cast" or len(self.cons.get(cast.outputs[0], [])) != 1:
                continue
            x = cast.inputs[0]
            xv = self.g.values[x]
            if xv.dtype not in _INT8 or len(xv.shape) < 3 or not rs.attrs["keepdims"]:
                continue
            if sorted(int(k) % len(xv.shape) for k in rs.attrs["axes"]) != list(range(2, len(xv.shape))):
                continue
            try:
                s_in, z_in = self.act(x)
                s_o, _ = self.act(n.outputs[0])
            except QdqExportError:
                continue
            from ..quant.qmath import multiplier_value
            count = int(np.prod(xv.shape[2:]))
            m = multiplier_value(_tuple(n.attrs["multiplier"])[0], _tuple(n.attrs["shift"])[0])
            if n.attrs["in_zero_point"] != count * z_in or abs(m - s_in / (count * s_o)) > 1e-6 * m:
                continue
            self.gap[id(n)] = x
            self.skip.update((id(rs), id(cast)))

    def node(self, n: Node) -> None:
        op = n.op
        if op in ("qconv", "qdense"):
            self.linear(n)
        elif op == "qdense_dequant":
            self.linear_int32(n)
        elif op == "qmatmul":
            if n.attrs["out_dtype"] == "int32":
                self.linear_int32(n)
            else:
                self.binary(n, "MatMul")
        elif op == "qadd":
            self.binary(n, "Add")
        elif op == "qmul":
            self.binary(n, "Mul")
        elif op == "qlut":
            self.qlut(n)
        elif op == "requantize":
            self.requantize(n)
        elif op == "qglobal_avg_pool":
            self.global_avg_pool(n)
        elif op == "quantize":
            self.quantize(n)
        elif op == "dequantize":
            self.dequantize(n)
        elif op == "global_max_pool" and self.g.values[n.inputs[0]].dtype not in ("float16", "float32", "float64"):
            # ONNX GlobalMaxPool is float only: a ReduceMax over the spatial axes (exact on integers)
            r = len(self.g.values[n.inputs[0]].shape)
            axes = self.w.const(f"{n.name or n.outputs[0]}_axes", np.arange(2, r, dtype=np.int64))
            self.w.emit("ReduceMax", [n.inputs[0], axes], list(n.outputs), n.name, keepdims=1)
        else:
            try:
                _write_node(self.w, n)
            except KeyError:
                raise QdqExportError(f"node {n.name!r}: op {op!r} has no ONNX mapping") from None

    def run(self):
        bad = []
        self.find_avg_pools()
        for n in self.g.nodes:
            if id(n) in self.skip:
                continue
            try:
                self.node(n)
            except QdqExportError as e:
                bad.append(str(e))
        if bad:
            raise QdqExportError(f"cannot export graph {self.g.name!r} as QDQ ONNX ({len(bad)} problem(s)):\n"
                                 + "\n".join(f"  - {b}" for b in bad))


def to_qdq_model(graph: Graph, opset: int = OPSET, lut: str = "auto"):
    """The QDQ ``onnx.ModelProto`` of a quantized edgec Graph (no file written)."""
    import onnx
    from onnx import helper, numpy_helper
    if lut not in ("auto", "gather"):
        raise QdqExportError(f"lut must be 'auto' or 'gather', got {lut!r}")
    if opset < 19:
        raise QdqExportError(f"QDQ export needs opset >= 19 (per-axis int32 DequantizeLinear, ReduceMax axes "
                             f"input), got {opset}")
    ex = _Exporter(graph, lut)
    ex.run()
    w = ex.w
    used = {i for nd in w.nodes for i in nd.input if i}
    have = {t.name for t in w.inits}
    for name in sorted(used - have):
        v = graph.values.get(name)
        if v is not None and v.const is not None:
            w.inits.append(numpy_helper.from_array(np.asarray(v.const), name))

    def info(name: str):
        v = graph.values[name]
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)), list(v.shape))

    g = helper.make_graph(w.nodes, graph.name or "graph", [info(i) for i in graph.inputs],
                          [info(o) for o in graph.outputs], initializer=w.inits,
                          doc_string="QDQ export of an edgec int8 graph")
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgec")
    model.ir_version = min(model.ir_version, 10)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise QdqExportError(f"the exported QDQ model does not pass onnx.checker: {e}") from None
    return model


def export_qdq(source, path=None, *, opset: int = OPSET, lut: str = "auto"):
    """Export ``source`` (an artifact folder of ``edgec compile --quantize int8`` or a quantized
    Graph) as QDQ ONNX; writes ``path`` atomically when given; returns the ModelProto.
    ``lut="auto"`` writes a lookup table as DQ -> float op -> Q when the op is known and reproduces
    the table, else as a Gather; ``"gather"`` always as a Gather (bit-exact)."""
    graph = load_quantized_graph(source)
    try:
        model = to_qdq_model(graph, opset=opset, lut=lut)
    except OnnxExportError as e:
        raise QdqExportError(str(e)) from None
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise QdqExportError(f"{path} is a folder; give the .onnx file to write")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(model.SerializeToString())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return model


# -- CLI ---------------------------------------------------------------------------------------------

def cmd_export_qdq(args) -> int:
    """``edgec export-qdq ARTIFACT OUT.onnx [--lut auto|gather] [--opset N]``"""
    model = export_qdq(args.artifact, args.output, opset=args.opset, lut=args.lut)
    counts: dict[str, int] = {}
    for nd in model.graph.node:
        counts[nd.op_type] = counts.get(nd.op_type, 0) + 1
    size = Path(args.output).stat().st_size
    print(f"exported {args.artifact} -> {args.output} (opset {args.opset}, {len(model.graph.node)} nodes, "
          f"{size:,} B)")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def add_export_qdq_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export-qdq", help="write a quantized artifact as QDQ ONNX (runnable by onnxruntime)")
    p.add_argument("artifact", help="artifact folder of `edgec compile --quantize int8`")
    p.add_argument("output", help=".onnx file to write")
    p.add_argument("--lut", choices=("auto", "gather"), default="auto",
                   help="lookup tables as DQ -> float op -> Q when the op is known (auto, default) or always "
                        "as a Gather on the table (bit-exact)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (>= 19; default {OPSET})")
    p.set_defaults(fn=cmd_export_qdq)
    return p


__all__ = ["export_qdq", "to_qdq_model", "save_ir", "load_ir", "load_quantized_graph", "cmd_export_qdq",
           "add_export_qdq_parser", "QdqExportError", "NotAnArtifactError", "NotQuantizedError", "IRFileError",
           "IR_FILE"]
