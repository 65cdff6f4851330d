"""The numpy reference interpreter: runs an edgec Graph with each op's reference implementation.

    outputs = run_graph(graph, {"x": x})      # dict output name -> np.ndarray

It is the oracle the compiled artifact is checked against (and the way to test an op's
definition against onnxruntime without compiling anything).
"""
from .interpreter import ReferenceRunError, run_graph

__all__ = ["run_graph", "ReferenceRunError"]
