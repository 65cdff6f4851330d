"""ONNX op converters, one module per group; importing this package registers them."""
from . import elementwise, matrix, nn, tensor, reduce, quant  # noqa: F401
