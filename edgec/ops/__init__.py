"""Definitions of every edgec IR op: attribute schema, type inference, numpy reference.

One module per group; importing this package registers them all in ``edgec.ir.ops.OPS``.
"""
from . import elementwise, matrix, nn, tensor, reduce, quant  # noqa: F401
