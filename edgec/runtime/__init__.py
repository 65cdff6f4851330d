"""The edgec C runtime from Python (cffi over runtime_c/include/edgec/edgec.h).

    import edgec.runtime
    with edgec.runtime.load("out/", threads=2) as m:
        outputs = m.run({"x": x})
    m = edgec.runtime.load("out_aarch64/", emulate=True)   # a foreign artifact, under qemu

See ``edgec.runtime.model.Model`` for the API, ``edgec.runtime.emulated`` for foreign-target
artifacts and docs/c_api.md for the C side.
"""
from .emulated import EmulatedModel, load
from .model import DTYPES, Model, RuntimeOptionError, TensorInfo

__all__ = ["load", "Model", "EmulatedModel", "TensorInfo", "DTYPES", "RuntimeOptionError"]
