"""edgec: compile an ONNX model into a small artifact and run it with a C runtime.

    import edgec
    out = edgec.compile("model.onnx", target="x86_64", input_shapes={"x": (1, 3, 48, 192)}, output_dir="out/")
    m = edgec.load(out)
    outputs = m.run({"x": x})          # dict name -> np.ndarray
"""
from .errors import EdgecError

__version__ = "0.1.0"


def compile(model, target="host", input_shapes=None, output_dir=None, **options):
    """Compile an ONNX model (path, bytes or ModelProto) into an artifact folder; returns its Path."""
    from .compiler import compile_model
    return compile_model(model, target=target, input_shapes=input_shapes, output_dir=output_dir, **options)


def load(path, threads=None, emulate=False):
    """Load an artifact folder with the C runtime; returns an ``edgec.runtime.Model``.

    ``emulate=True`` runs an artifact built for another CPU (e.g. aarch64) through its runner
    under the target's emulator (qemu user mode); same ``inputs``/``outputs``/``run`` interface.
    """
    from .runtime import load as _load
    return _load(path, threads=threads, emulate=emulate)


__all__ = ["compile", "load", "EdgecError", "__version__"]
