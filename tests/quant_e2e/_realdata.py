"""Shared steps of the real-data int8 accuracy tests (trec6 text, scikit-learn digits): train the
small float model with tools/train_small_models.py, quantize with calibration on the train split,
measure test-split accuracy with the reference interpreter (every calibration method) and on the
C runtime (one compiled artifact per model)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgec.frontend.onnx_import import import_onnx
from edgec.passes import eliminate_dead_code, infer_shapes, run_pipeline
from edgec.passes.quantize_int8 import QuantizeOptions, quantize_int8
from edgec.quant import CalibrationOptions, calibrate
from edgec.reference import run_graph

REPO = Path(__file__).resolve().parents[2]
METHODS = ("minmax", "percentile", "entropy", "mse")


def tools_module():
    spec = importlib.util.spec_from_file_location("train_small_models", REPO / "tools/train_small_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def divisor_batch(n: int, cap: int = 512) -> int:
    """The largest batch <= cap that splits n samples exactly (calibration sees every sample once)."""
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def float_graph(model: Path, input_name: str, shape):
    return run_pipeline(import_onnx(model, input_shapes={input_name: tuple(shape)}))


def quantized_graph(model: Path, input_name: str, xtr: np.ndarray, eval_batch: int, method: str,
                    activation_dtype: str = "uint8", bias_correction: bool = True):
    """Calibrate on every training sample (batched graph), quantize the eval-batch graph with those ranges."""
    cb = divisor_batch(len(xtr))
    gc = float_graph(model, input_name, (cb,) + xtr.shape[1:])
    feeds = ({input_name: xtr[i:i + cb]} for i in range(0, len(xtr), cb))
    ranges = calibrate(gc, feeds, CalibrationOptions(method=method, quiet=True))
    ge = float_graph(model, input_name, (eval_batch,) + xtr.shape[1:])
    # bias correction (on by default, as in the compiler) on eval-batch chunks of the train split
    bc_feeds = ({input_name: xtr[i:i + eval_batch]} for i in range(0, len(xtr) - eval_batch + 1, eval_batch))
    qg = quantize_int8(ge, ranges, QuantizeOptions(activation_dtype=activation_dtype, bias_correction=bias_correction),
                       calib_feeds=bc_feeds)
    return run_pipeline(qg, [("infer_shapes", infer_shapes), ("eliminate_dead_code", eliminate_dead_code)])


def predict(graph, input_name: str, x: np.ndarray, batch: int) -> np.ndarray:
    """argmax of the graph's first output over x, in batches (the last one zero-padded)."""
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        k = len(xb)
        if k < batch:
            xb = np.concatenate([xb, np.zeros((batch - k,) + xb.shape[1:], xb.dtype)])
        out.append(run_graph(graph, {input_name: xb})[graph.outputs[0]][:k])
    return np.concatenate(out).argmax(1)


def run_artifact(model, input_name: str, x: np.ndarray, output: str) -> np.ndarray:
    return np.concatenate([model.run({input_name: x[i:i + 1]})[output] for i in range(len(x))])
