"""The canonical op set of the edgec IR and its registry.

Every op is declared once, with
- ``attrs``:   its attribute schema, name -> default (``REQUIRED`` when it has none);
- ``infer``:   ``infer(inputs: list[Value | None], attrs) -> list[(dtype, shape)]``;
- ``reference``: the numpy semantics, ``reference(*arrays, **attrs) -> tuple[np.ndarray, ...]``
  (absent optional inputs arrive as None). This is the oracle for constant folding and tests;
- ``macs``: optional multiply-accumulate count ``macs(inputs, outputs, attrs) -> int`` for reports.

The definitions live in ``edgec/ops/<group>.py``; importing ``edgec.ops`` registers them all.
docs/ops.md lists every op with its attributes and semantics.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

REQUIRED = object()


@dataclass(frozen=True)
class OpDef:
    name: str
    group: str
    attrs: dict[str, Any]
    infer: Callable
    reference: Callable
    macs: Callable | None = None
    doc: str = ""
    # ops whose output is a view of the input's bytes (reshape): the planner may alias them
    view: bool = False
    # the number of inputs: (min, max); max None = variadic
    arity: tuple[int, int | None] = (1, 1)
    foldable: bool = True

    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise TypeError(f"op {self.name}: unknown attribute(s) {sorted(unknown)}")
        out = {}
        for k, default in self.attrs.items():
            if k in attrs:
                out[k] = attrs[k]
            elif default is REQUIRED:
                raise TypeError(f"op {self.name}: missing required attribute {k!r}")
            else:
                out[k] = default
        return out


OPS: dict[str, OpDef] = {}


def register(name: str, *, group: str, infer: Callable, attrs: dict[str, Any] | None = None,
             macs: Callable | None = None, view: bool = False, arity: tuple[int, int | None] = (1, 1),
             foldable: bool = True):
    """Decorator over the reference implementation that registers an op."""
    def deco(ref: Callable) -> Callable:
        if name in OPS:
            raise ValueError(f"op {name!r} registered twice")
        OPS[name] = OpDef(name=name, group=group, attrs=dict(attrs or {}), infer=infer, reference=ref,
                          macs=macs, doc=(ref.__doc__ or "").strip(), view=view, arity=arity,
                          foldable=foldable)
        return ref
    return deco


def get(name: str) -> OpDef:
    _ensure_loaded()
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown edgec op {name!r}") from None


_loaded = False


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import edgec.ops  # noqa: F401  (registers every op)


def all_ops() -> dict[str, OpDef]:
    _ensure_loaded()
    return OPS
