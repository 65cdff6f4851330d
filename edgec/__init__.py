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


def prune(model, ratio=0.5, mode="channel", norm="l1", per_layer=None, input_shapes=None, output=None,
          min_channels=1, skip=(), scope="layer"):
    """Prune an ONNX model (path, bytes or ModelProto); returns ``(onnx.ModelProto, report)``.

    ``mode="channel"``: structured pruning (``edgec.passes.prune_channels``: filters and neurons
    removed, ``report`` a ``PruneReport`` with per-layer channels and MACs); ``mode="unstructured"``:
    magnitude pruning (``edgec.passes.prune_weights``: weights zeroed, ``scope`` "layer"|"global",
    ``report`` a ``PruneWeightsReport`` with sparsities). ``per_layer`` maps node names to ratios.
    The model is imported with ``input_shapes`` bound (the result has static shapes) and the pruned
    graph exported to ONNX (opset 20); ``output`` also saves it to that path. See docs/pruning.md.
    """
    from .frontend.onnx_export import export_onnx
    from .frontend.onnx_import import import_onnx
    if mode == "channel":
        from .passes.prune_channels import PruneOptions, prune_channels
        opts = PruneOptions(ratio=ratio, norm=norm, per_layer=dict(per_layer or {}), min_channels=min_channels,
                            skip=frozenset(skip))
        run = prune_channels
    elif mode == "unstructured":
        from .passes.prune_weights import PruneWeightsOptions, prune_weights
        opts = PruneWeightsOptions(ratio=ratio, scope=scope, per_layer=dict(per_layer or {}), skip=frozenset(skip))
        run = prune_weights
    else:
        raise EdgecError(f"prune mode must be 'channel' or 'unstructured', got {mode!r}")
    graph = import_onnx(model, input_shapes=input_shapes)
    unknown = sorted((set(per_layer or {}) | set(skip)) - {n.name for n in graph.nodes})
    if unknown:
        raise EdgecError(f"--per-layer/skip name(s) {unknown} are not nodes of the model")
    pruned, report = run(graph, opts)
    proto = export_onnx(pruned)
    if output is not None:
        import onnx
        onnx.save(proto, str(output))
    return proto, report


__all__ = ["compile", "load", "prune", "EdgecError", "__version__"]
