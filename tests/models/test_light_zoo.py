"""The "light" model zoo shipped in the onnx wheel (onnx/backend/test/data/light), end to end.

Each model is the real architecture with its weights replaced by ConstantOfShape nodes, and
comes with ``<model>_output_0.pb``: the output for the input onnx's own test runner makes
(``Runner.generate_dummy_data(x, seed=0, name=model_name, random=False)``, replicated by
``dummy_data`` below and checked against onnx by ``test_dummy_data_matches_onnx_runner``).
Each model compiles at its declared input shape and must match the stored output within
1e-3 relative to the output's scale (max abs error <= 1e-3 * max(1, max|want|)).

Because the weights are constants, most of these models end in a softmax of 1000 equal
logits: the stored output is exactly 1/1000 whatever the network computed before. So the
test also exposes the last Softmax's input as an extra graph output and compares it with
onnxruntime (same tolerance, relative to its own scale, which reaches 1e31 for vgg19): that
checks the numerics of the whole network. The errors seen are printed at the end of the
session (tests/models/conftest.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import assert_close, max_abs_error, output_scale, run_edgec, run_ort

# the models (file stem after "light_"). Measured compile+run on 2 cores with a cold kernel
# cache: densenet121 37 s, vgg19 15 s, inception_v2 12 s, inception_v1 7 s, alexnet, zfnet512
# and resnet50 6 s, shufflenet 5 s, squeezenet 4 s. The issue asks for all nine in CI: about
# 100 s of the suite, spread over two workers, so none is marked slow.
MODELS = {name: False for name in ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                                   "shufflenet", "squeezenet", "vgg19", "zfnet512")}


def light_dir() -> Path:
    import onnx
    return Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light"


def dummy_data(x, seed: int = 0, random: bool = False) -> np.ndarray:
    """The input onnx's runner generates for a float ValueInfoProto (missing dims become 1)."""
    tt = x.type.tensor_type
    if tt.elem_type != 1:
        raise ValueError(f"input {x.name!r}: the onnx runner only generates float inputs")
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim)
    if random:
        return np.random.default_rng(seed=seed).random(shape, np.float32)
    n = np.prod(shape)
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def light_case(name: str):
    """(model path, feeds, [expected outputs]) for light_<name>."""
    import onnx
    from onnx import numpy_helper
    path = light_dir() / f"light_{name}.onnx"
    if not path.is_file():
        pytest.fail(f"{path} not found: the installed onnx wheel ({onnx.__version__}) has no light zoo", pytrace=False)
    model = onnx.load(str(path))
    inits = {t.name for t in model.graph.initializer}
    feeds = {x.name: dummy_data(x, seed=0, random=False) for x in model.graph.input if x.name not in inits}
    expected = []
    for i in range(len(model.graph.output)):
        pb = path.with_name(f"light_{name}_output_{i}.pb")
        if not pb.is_file():
            pytest.fail(f"{pb} missing: light_{name} has {len(model.graph.output)} outputs", pytrace=False)
        expected.append(numpy_helper.to_array(onnx.load_tensor(str(pb))))
    return path, feeds, expected


def with_logits_output(path: Path):
    """(model with the last Softmax's input added as a graph output, that name), or (model, None)."""
    import onnx
    model = onnx.load(str(path))
    softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
    if not softmax:
        return model, None
    logits = softmax[-1].input[0]
    model.graph.output.append(onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
    return model, logits


def test_dummy_data_matches_onnx_runner():
    """Our replica of the input generator gives onnx's bytes, for every light model."""
    import onnx
    from onnx.backend.test.runner import Runner
    for name in MODELS:
        model = onnx.load(str(light_dir() / f"light_{name}.onnx"), load_external_data=False)
        inits = {t.name for t in model.graph.initializer}
        for x in model.graph.input:
            if x.name in inits:
                continue
            ours = dummy_data(x, seed=0, random=False)
            theirs = Runner.generate_dummy_data(x, seed=0, name=f"test_{name}", random=False)
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
            assert ours.tobytes() == theirs.tobytes(), name


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if slow else []) for n, slow in MODELS.items()])
def test_light_model(name, tmp_path, record_property):
    path, feeds, expected = light_case(name)
    model, logits = with_logits_output(path)
    got = run_edgec(model, feeds, tmp_path)
    outs = list(got.values())
    for i, want in enumerate(expected):
        g = outs[i]
        record_property("light_error", (name, f"output {i}", max_abs_error(g, want) if g.shape == want.shape
                                        else float("nan"), output_scale(want)))
        assert_close(g, want, rel=1e-3, what=f"light_{name} output {i}")
    if logits is not None:
        want = run_ort(model, feeds)[logits]
        g = got[logits]
        record_property("light_error", (name, f"logits {logits!r} vs onnxruntime",
                                        max_abs_error(g, want) if g.shape == want.shape else float("nan"),
                                        output_scale(want)))
        assert_close(g, want, rel=1e-3, what=f"light_{name} logits {logits!r}")
