"""The edgec C runtime from Python (cffi over runtime_c/include/edgec/edgec.h).

    import edgec.runtime
    with edgec.runtime.load("out/", threads=2) as m:
        outputs = m.run({"x": x})

See ``edgec.runtime.model.Model`` for the API and docs/c_api.md for the C side.
"""
from .model import DTYPES, Model, RuntimeOptionError, TensorInfo, load

__all__ = ["load", "Model", "TensorInfo", "DTYPES", "RuntimeOptionError"]
