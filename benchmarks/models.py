"""Benchmark-shaped ONNX models built in code (seeded weights, no download).

- ``dscnn()``: a DS-CNN keyword-spotting network (the "DS-CNN-S" shape of Hello Edge,
  Zhang et al. 2017): input 1x1x49x10 MFCC frames, a 10x4 stride-2 conv to 64 channels,
  four depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each with ReLU), global
  average pooling, a dense layer to 12 classes.
- ``mobilenet_v2()``: MobileNetV2 1.0 at 1x3x224x224 (Sandler et al. 2018, the paper's
  table 2: inverted residual blocks with expansion 6, ReLU6 as Clip(0, 6), linear
  bottlenecks, residual adds where stride 1 and channels match), global average pooling,
  1000 classes. BatchNorm is already folded into the conv biases, as in a deployed model.

Weights are He-normal with the biases small, so activations stay in a realistic range
through the depth (a random network whose activations explode or vanish would make int8
figures meaningless). These models are for timing; accuracy figures come from trained
models elsewhere.

- ``resnet50_light_seeded()``: onnx's resnet50-light graph (the ResNet-50 of the model zoo, whose
  every weight is a ``ConstantOfShape`` filled with 0.02) with its constants materialized as
  initializers holding seeded weights: conv/gemm He-normal, BatchNorm scale 1 (0.2 on the last
  BN of each residual branch, so the residual sum does not double its variance 16 times), bias
  0, mean 0, variance 1. With the constant fill every channel carries the same value and the
  activations grow past 1e6 through the depth, so int8 would keep most layers in float (the
  artifact was 0.94 of fp32) and its latency and accuracy figures would mean nothing;
  onnxruntime's quantizer also cannot read the ``ConstantOfShape`` weights.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base: str, arr: np.ndarray) -> str:
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def conv(self, x: str, cin: int, cout: int, k: tuple[int, int], stride: int = 1, group: int = 1,
             pads: tuple[int, int, int, int] | None = None, act: str | None = "relu") -> str:
        kh, kw = k
        fan_in = (cin // group) * kh * kw
        w = (self.rng.standard_normal((cout, cin // group, kh, kw)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (self.rng.standard_normal(cout) * 0.05).astype(np.float32)
        if pads is None:
            pads = ((kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2)
        y = self.name("conv")
        self.nodes.append(helper.make_node("Conv", [x, self.const("w", w), self.const("b", b)], [y],
                                           kernel_shape=[kh, kw], strides=[stride, stride], group=group,
                                           pads=list(pads), name=y))
        return self.act(y, act)

    def act(self, x: str, act: str | None) -> str:
        if act is None:
            return x
        y = self.name(act)
        if act == "relu":
            self.nodes.append(helper.make_node("Relu", [x], [y], name=y))
        elif act == "relu6":
            self.nodes.append(helper.make_node("Clip", [x, self.const("lo", np.float32(0)),
                                                        self.const("hi", np.float32(6))], [y], name=y))
        else:
            raise ValueError(act)
        return y

    def add(self, a: str, b: str) -> str:
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y], name=y))
        return y

    def head(self, x: str, cin: int, classes: int, out: str) -> None:
        p = self.name("gap")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [p], name=p))
        f = self.name("flatten")
        self.nodes.append(helper.make_node("Flatten", [p], [f], axis=1, name=f))
        w = (self.rng.standard_normal((classes, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
        b = np.zeros(classes, np.float32)
        self.nodes.append(helper.make_node("Gemm", [f, self.const("fc_w", w), self.const("fc_b", b)], [out],
                                           transB=1, name="fc"))

    def model(self, name: str, inp: str, shape: list[int], out: str, classes: int) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, name,
                              [helper.make_tensor_value_info(inp, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [shape[0], classes])],
                              self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgec-benchmarks")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def dscnn(seed: int = 0, classes: int = 12, channels: int = 64) -> onnx.ModelProto:
    b = _Builder(seed)
    x = b.conv("input", 1, channels, (10, 4), stride=2, pads=(4, 1, 5, 2))
    for _ in range(4):
        x = b.conv(x, channels, channels, (3, 3), group=channels)
        x = b.conv(x, channels, channels, (1, 1))
    b.head(x, channels, classes, "logits")
    return b.model("dscnn", "input", [1, 1, 49, 10], "logits", classes)


def mobilenet_v2(seed: int = 0, classes: int = 1000, size: int = 224) -> onnx.ModelProto:
    b = _Builder(seed)
    x = b.conv("input", 3, 32, (3, 3), stride=2, act="relu6")
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x if t == 1 else b.conv(x, cin, hidden, (1, 1), act="relu6")
            y = b.conv(y, hidden, hidden, (3, 3), stride=stride, group=hidden, act="relu6")
            y = b.conv(y, hidden, c, (1, 1), act=None)
            x = b.add(x, y) if stride == 1 and cin == c else y
            cin = c
    x = b.conv(x, cin, 1280, (1, 1), act="relu6")
    b.head(x, 1280, classes, "logits")
    return b.model("mobilenet_v2", "input", [1, 3, size, size], "logits", classes)


def resnet50_light_seeded(seed: int = 0) -> onnx.ModelProto:
    from pathlib import Path
    src = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
    m = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    shapes = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    produced = {}
    for n in m.graph.node:
        if n.op_type == "ConstantOfShape":
            produced[n.output[0]] = tuple(int(d) for d in shapes[n.input[0]])
    # role of each constant from its consumer
    role = {}
    for n in m.graph.node:
        if n.op_type == "Conv":
            role[n.input[1]] = "conv_w"
            if len(n.input) > 2:
                role[n.input[2]] = "zero"
        elif n.op_type == "Gemm":
            role[n.input[1]], role[n.input[2]] = "fc_w", "zero"
        elif n.op_type == "BatchNormalization":
            last = "branch2c" in n.input[1]
            role[n.input[1]] = "bn_scale_last" if last else "one"
            role[n.input[2]], role[n.input[3]], role[n.input[4]] = "zero", "zero", "one"
    inits = []
    for name, shape in produced.items():
        r = role.get(name)
        if r == "conv_w":
            fan_in = int(np.prod(shape[1:]))
            a = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif r == "fc_w":
            a = rng.standard_normal(shape) * np.sqrt(1.0 / shape[-1 if len(shape) > 1 else 0])
        elif r == "bn_scale_last":
            a = np.full(shape, 0.2)
        elif r == "one":
            a = np.ones(shape)
        elif r == "zero":
            a = np.zeros(shape)
        else:
            raise ValueError(f"resnet50-light: no role for constant {name}")
        inits.append(numpy_helper.from_array(a.astype(np.float32), name))
    nodes = [n for n in m.graph.node if n.op_type != "ConstantOfShape"]
    used = {i for n in nodes for i in n.input}
    keep = {n for n in shapes if n in used}
    graph = helper.make_graph(nodes, "resnet50_light_seeded", [i for i in m.graph.input if i.name not in produced
                                                              and i.name not in shapes],
                              list(m.graph.output), [i for i in m.graph.initializer if i.name in keep] + inits)
    out = helper.make_model(graph, opset_imports=list(m.opset_import), producer_name="edgec-benchmarks")
    out.ir_version = max(int(m.ir_version), 7)   # initializers need not be graph inputs (IR >= 4)
    # opset 9 -> 13: onnxruntime's QDQ quantizer writes per-axis DequantizeLinear (opset >= 13)
    from onnx import version_converter
    out = version_converter.convert_version(out, 13)
    onnx.checker.check_model(out)
    return out


if __name__ == "__main__":
    import sys
    from pathlib import Path
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for fn in (dscnn, mobilenet_v2, resnet50_light_seeded):
        m = fn()
        onnx.save(m, out / f"{fn.__name__}.onnx")
        print(out / f"{fn.__name__}.onnx")
