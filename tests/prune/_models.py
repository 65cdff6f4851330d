"""Small CNNs built with onnx.helper and seeded random weights, for the pruning tests.

Each builder returns ``(model, channels)`` where ``channels`` maps every conv/Gemm node name to
its output channel count. With ``dead=True`` the upper half of every prunable layer's filters
(weights, bias, BatchNorm shift and mean) is zero, so those channels carry exact zeros through
the whole network: pruning them at ratio 0.5 must leave the outputs unchanged.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _B:
    def __init__(self, seed: int, dead: bool):
        self.rng = np.random.default_rng(seed)
        self.dead = dead
        self.nodes, self.inits = [], []
        self.channels: dict[str, int] = {}
        self.k = 0

    def name(self, base: str) -> str:
        self.k += 1
        return f"{base}{self.k}"

    def const(self, base: str, a) -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(a, np.float32), n))
        return n

    def node(self, op: str, ins, name=None, **attrs) -> str:
        name = name or self.name(op.lower())
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, list(ins), [out], name=name, **attrs))
        return out

    def _kill(self, a: np.ndarray, axis: int = 0) -> np.ndarray:
        if self.dead:
            idx = [slice(None)] * a.ndim
            idx[axis] = slice(a.shape[axis] // 2, None)
            a[tuple(idx)] = 0
        return a

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1, name=None,
             prunable: bool = True) -> str:
        name = name or self.name("conv")
        w = self.rng.standard_normal((cout, cin // group, k, k)).astype(np.float32) / np.sqrt(cin // group * k * k)
        b = self.rng.standard_normal(cout).astype(np.float32) * 0.1
        if prunable:
            self._kill(w), self._kill(b)
        self.channels[name] = cout
        p = k // 2
        return self.node("Conv", [x, self.const("w", w), self.const("b", b)], name=name, kernel_shape=[k, k],
                         strides=[stride, stride], pads=[p, p, p, p], group=group)

    def bn(self, x: str, c: int) -> str:
        scale = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        shift = self._kill(self.rng.standard_normal(c).astype(np.float32) * 0.1)
        mean = self._kill(self.rng.standard_normal(c).astype(np.float32) * 0.1)
        var = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        return self.node("BatchNormalization", [x] + [self.const(n, a) for n, a in
                                                       (("s", scale), ("t", shift), ("m", mean), ("v", var))],
                         epsilon=1e-5)

    def gemm(self, x: str, k: int, n: int, name: str) -> str:
        w = self.rng.standard_normal((n, k)).astype(np.float32) / np.sqrt(k)
        b = self.rng.standard_normal(n).astype(np.float32) * 0.1
        self.channels[name] = n
        return self.node("Gemm", [x, self.const("w", w), self.const("b", b)], name=name, transB=1)

    def model(self, x_shape, out: str, out_shape, name: str) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))],
                              initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def resnet_like(seed: int = 0, dead: bool = False):
    """x[1,3,16,16] -> stem conv-bn-relu (16) -> basic block (16, identity add) -> downsampling block
    (32, stride 2, 1x1 conv + bn shortcut) -> basic block (32) -> global avg pool -> flatten -> gemm (10)."""
    b = _B(seed, dead)
    s = b.node("Relu", [b.bn(b.conv("x", 3, 16, 3, name="stem"), 16)])
    h = b.node("Relu", [b.bn(b.conv(s, 16, 16, 3, name="b1c1"), 16)])
    h = b.bn(b.conv(h, 16, 16, 3, name="b1c2"), 16)
    s = b.node("Relu", [b.node("Add", [h, s])])
    h = b.node("Relu", [b.bn(b.conv(s, 16, 32, 3, stride=2, name="b2c1"), 32)])
    h = b.bn(b.conv(h, 32, 32, 3, name="b2c2"), 32)
    sc = b.bn(b.conv(s, 16, 32, 1, stride=2, name="b2sc"), 32)
    s = b.node("Relu", [b.node("Add", [h, sc])])
    h = b.node("Relu", [b.bn(b.conv(s, 32, 32, 3, name="b3c1"), 32)])
    h = b.bn(b.conv(h, 32, 32, 3, name="b3c2"), 32)
    s = b.node("Relu", [b.node("Add", [h, s])])
    f = b.node("Flatten", [b.node("GlobalAveragePool", [s])], axis=1)
    y = b.gemm(f, 32, 10, "fc")
    return b.model((1, 3, 16, 16), y, (1, 10), "resnet_like"), b.channels


def inception_like(seed: int = 0, dead: bool = False):
    """x[1,4,12,12] -> stem conv (8) -> concat[1x1 (8), 3x3 (12), pool->1x1 (4), pool(stem) (8)] (32)
    -> 1x1 conv (16) -> global avg pool -> flatten -> gemm (5)."""
    b = _B(seed, dead)
    s = b.node("Relu", [b.conv("x", 4, 8, 3, name="stem")])
    b1 = b.node("Relu", [b.conv(s, 8, 8, 1, name="br1")])
    b2 = b.node("Relu", [b.conv(s, 8, 12, 3, name="br2")])
    p = b.node("MaxPool", [s], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    b3 = b.node("Relu", [b.conv(p, 8, 4, 1, name="br3")])
    p4 = b.node("MaxPool", [s], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    c = b.node("Concat", [b1, b2, b3, p4], axis=1)
    h = b.node("Relu", [b.conv(c, 32, 16, 1, name="mix")])
    f = b.node("Flatten", [b.node("GlobalAveragePool", [h])], axis=1)
    y = b.gemm(f, 16, 5, "fc")
    return b.model((1, 4, 12, 12), y, (1, 5), "inception_like"), b.channels


def mobilenet_like(seed: int = 0, dead: bool = False):
    """x[1,3,16,16] -> conv s2 (16)-bn-relu6 -> depthwise 3x3-bn-relu6 -> 1x1 (24)-bn-relu -> mul by a
    per-channel constant -> depthwise 3x3-relu6 -> 1x1 (32)-relu -> flatten the [1,32,8,8] map -> gemm (10)."""
    b = _B(seed, dead)
    lo, hi = b.const("lo", 0.0), b.const("hi", 6.0)
    h = b.node("Clip", [b.bn(b.conv("x", 3, 16, 3, stride=2, name="c1"), 16), lo, hi])
    h = b.node("Clip", [b.bn(b.conv(h, 16, 16, 3, group=16, name="dw1"), 16), lo, hi])
    h = b.node("Relu", [b.bn(b.conv(h, 16, 24, 1, name="pw1"), 24)])
    h = b.node("Mul", [h, b.const("g", b.rng.uniform(0.5, 2.0, (1, 24, 1, 1)))])
    h = b.node("Clip", [b.conv(h, 24, 24, 3, group=24, name="dw2"), lo, hi])
    h = b.node("Relu", [b.conv(h, 24, 32, 1, name="pw2")])
    f = b.node("Flatten", [h], axis=1)
    y = b.gemm(f, 32 * 8 * 8, 10, "fc")
    return b.model((1, 3, 16, 16), y, (1, 10), "mobilenet_like"), b.channels
