"""An edgec IR graph with ResNet-50's layer shapes (batch 1, 224x224, torchvision v1.5: stride on
the 3x3 convolution), BatchNorm folded into conv bias, random weights. Used to time kernel
compilation and to measure conv throughput on real layer shapes."""
from __future__ import annotations

import numpy as np

from edgec.ir.graph import Graph, Node, Value, const_value


def resnet50_graph(seed: int = 0, with_weights: bool = False) -> Graph:
    rng = np.random.default_rng(seed)
    values: dict[str, Value] = {}
    nodes: list[Node] = []
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def param(shape) -> str:
        name = fresh("p")
        if with_weights:
            values[name] = const_value(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))
        else:
            values[name] = Value(name, "float32", tuple(shape))
        return name

    def act(shape) -> str:
        name = fresh("t")
        values[name] = Value(name, "float32", tuple(shape))
        return name

    def conv(x, shape, oc, k, s, relu=True):
        n, c, h, w = shape
        p = k // 2
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        y = act((n, oc, oh, ow))
        nodes.append(Node("conv", (x, param((oc, c, k, k)), param((oc,))), (y,),
                          dict(strides=(s, s), pads=(p, p, p, p), dilations=(1, 1), group=1), fresh("conv")))
        out_shape = (n, oc, oh, ow)
        if relu:
            r = act(out_shape)
            nodes.append(Node("relu", (y,), (r,), {}, fresh("relu")))
            y = r
        return y, out_shape

    x = "input"
    values[x] = Value(x, "float32", (1, 3, 224, 224))
    y, shape = conv(x, (1, 3, 224, 224), 64, 7, 2)
    mp = act((1, 64, 56, 56))
    nodes.append(Node("max_pool", (y,), (mp,), dict(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
                                                     dilations=(1, 1)), "maxpool"))
    y, shape = mp, (1, 64, 56, 56)
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            s = stride if b == 0 else 1
            a, sa = conv(y, shape, width, 1, 1)
            a, sa = conv(a, sa, width, 3, s)
            a, sa = conv(a, sa, width * 4, 1, 1, relu=False)
            if b == 0:
                sc, _ = conv(y, shape, width * 4, 1, s, relu=False)
            else:
                sc = y
            add = act(sa)
            nodes.append(Node("add", (a, sc), (add,), {}, fresh("add")))
            r = act(sa)
            nodes.append(Node("relu", (add,), (r,), {}, fresh("relu")))
            y, shape = r, sa
    gp = act((1, 2048, 1, 1))
    nodes.append(Node("global_avg_pool", (y,), (gp,), {}, "gap"))
    fl = act((1, 2048))
    nodes.append(Node("reshape", (gp,), (fl,), dict(shape=(1, 2048)), "flatten"))
    out = act((1, 1000))
    nodes.append(Node("dense", (fl, param((1000, 2048)), param((1000,))), (out,), {}, "fc"))
    return Graph(nodes, values, ["input"], [out], name="resnet50")
