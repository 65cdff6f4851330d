"""Stable text form of a Graph, for dumps (EDGEC_DUMP_IR) and before/after tests.

    graph resnet(x: float32[1,3,224,224]) -> (y: float32[1,1000])
      const w0: float32[64,3,7,7]
      %c1: float32[1,64,112,112] = conv(x, w0, b0) {dilations=(1, 1), group=1, ...}
"""
from __future__ import annotations

from .graph import Graph, Value


def _ty(v: Value) -> str:
    return f"{v.dtype}[{','.join(str(d) for d in v.shape)}]"


def _fmt(v) -> str:
    if isinstance(v, float):
        return repr(float(v))
    return repr(v)


def print_graph(g: Graph, show_consts: bool = True) -> str:
    ins = ", ".join(f"{n}: {_ty(g.values[n])}" for n in g.inputs)
    outs = ", ".join(f"{n}: {_ty(g.values[n])}" for n in g.outputs)
    lines = [f"graph {g.name}({ins}) -> ({outs})"]
    if show_consts:
        used = {i for n in g.nodes for i in n.inputs if i} | set(g.outputs)
        for name in sorted(used):
            v = g.values.get(name)
            if v is not None and v.const is not None:
                lines.append(f"  const {name}: {_ty(v)}")
    for n in g.nodes:
        outs = ", ".join(f"%{o}: {_ty(g.values[o])}" for o in n.outputs)
        args = ", ".join(i if i else "_" for i in n.inputs)
        attrs = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(n.attrs.items()))
        lines.append(f"  {outs} = {n.op}({args})" + (f" {{{attrs}}}" if attrs else ""))
    return "\n".join(lines) + "\n"
