"""Converters for ONNX elementwise ops."""
from __future__ import annotations

from ..registry import ConvertContext, converter


@converter("Identity", since=1)
def identity(ctx: ConvertContext) -> None:
    ctx.set_output(0, ctx.input(0))


@converter("Relu", since=6)
def relu(ctx: ConvertContext) -> None:
    ctx.set_output(0, ctx.emit1("relu", [ctx.input(0)]))


@converter("Add", since=7)
def add(ctx: ConvertContext) -> None:
    ctx.check_attrs({})
    ctx.set_output(0, ctx.emit1("add", [ctx.input(0), ctx.input(1)]))
