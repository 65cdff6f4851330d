"""Converters for ONNX matrix ops."""
from __future__ import annotations
