"""The TVM backend: kernel generators (``kernels``), the build step and the kernel cache.

    from edgec.backend import build_kernels, KernelCache
    lib = build_kernels(graph, target, workdir, cache=KernelCache())

Importing this package does not import TVM; building kernels does.
"""
from .build import KernelCall, KernelLibrary, build_kernels, kernel_name, node_spec  # noqa: F401
from .cache import BACKEND_VERSION, KernelCache, default_cache_dir  # noqa: F401
