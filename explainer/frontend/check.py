"""`explainer check`: what a model looks like to us, which ops we support, and what canonicalisation changes."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import onnx

from explainer.errors import ExplainerError, UnsupportedOpError
from explainer.frontend.canonicalise import canonicalise
from explainer.frontend.inputs import DEFAULT_DOMAINS, detect_layout, image_input
from explainer.onnx_io import load_model
from explainer.ops import CONVERTERS


@dataclass
class CheckReport:
    """The result of checking one model; ``ok`` says whether it can be explained."""

    source: str
    inputs: list[str]
    outputs: list[str]
    layout: str | None
    ops: list[tuple[str, int, str]]
    changes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def format(self) -> str:
        lines = [f"model: {self.source}", "inputs:"] + [f"  {i}" for i in self.inputs]
        lines += ["outputs:"] + [f"  {o}" for o in self.outputs]
        lines.append(f"input layout: {self.layout or 'unknown'}")
        lines.append("ops:")
        width = max((len(op) for op, _, _ in self.ops), default=2)
        lines += [f"  {op:<{width}}  ×{count:<4} {status}" for op, count, status in self.ops]
        if self.changes:
            lines.append("canonicalisation:")
            lines += [f"  - {c}" for c in self.changes]
        lines.append("result: " + ("can be explained" if self.ok else f"cannot be explained: {self.error}"))
        return "\n".join(lines)


def _describe(vi: onnx.ValueInfoProto) -> str:
    t = vi.type.tensor_type
    dims = [d.dim_param or (str(d.dim_value) if d.dim_value else "?") for d in t.shape.dim]
    return f"{vi.name}: {onnx.TensorProto.DataType.Name(t.elem_type).lower()}[{', '.join(dims)}]"


def check_model(model: str | os.PathLike | onnx.ModelProto | bytes, input_shape: tuple[int, ...] | None = None,
                base_dir: str | os.PathLike | None = None) -> CheckReport:
    """Inspect ``model``; never raises for model problems (they end up in ``error``), only for unreadable files.
    ``base_dir``: the folder of the external data of a model given as bytes or a ModelProto (see ``load_model``)."""
    proto, source = load_model(model, base_dir)
    inits = {t.name for t in proto.graph.initializer}
    inputs = [_describe(i) for i in proto.graph.input if i.name not in inits]
    outputs = [_describe(o) for o in proto.graph.output]
    counts = Counter(n.op_type if n.domain in DEFAULT_DOMAINS else f"{n.domain}.{n.op_type}" for n in proto.graph.node)
    layout = None
    try:
        vi = image_input(proto, source)
        dims = vi.type.tensor_type.shape.dim
        layout = detect_layout(proto, vi, tuple(d.dim_value or None for d in dims))
    except ExplainerError:
        pass
    error, changes, folded, removed, unsupported = None, [], {}, {}, {}
    try:
        graph = canonicalise(proto, source, input_shape=input_shape)
        changes, folded, removed, layout = graph.changes, graph.folded_ops, graph.removed_ops, graph.layout
    except UnsupportedOpError as exc:
        error = str(exc)
        for name, op in exc.nodes:
            unsupported.setdefault(op, []).append(exc.reasons.get(name, f"no converter for {op}") + f" (node '{name}')")
    except ExplainerError as exc:
        error = str(exc)
    except MemoryError:
        error = f"{source}: not enough memory to read the model's graph"
    local = {f"{f.domain}.{f.name}" for f in proto.functions}
    ops = []
    for op, count in sorted(counts.items()):
        if op in local:
            status = "model-local function (inlined)"
        elif op in unsupported:
            status = _unsupported(unsupported[op])
        elif op in folded and folded[op] == count:
            status = "folded (constant/shape computation)"
        elif op in removed and removed[op] == count:
            status = "removed (no effect on the explanation)"
        elif op in CONVERTERS:
            status = "supported" + (f" ({folded[op]} folded)" if op in folded else "")
        elif op in folded:
            status = "folded (constant/shape computation)"
        else:
            status = "UNSUPPORTED"
        ops.append((op, count, status))
    for op in sorted(set(unsupported) - set(counts)):  # ops inside model-local functions
        ops.append((op, len(unsupported[op]), _unsupported(unsupported[op])))
    return CheckReport(source, inputs, outputs, layout, ops, changes, error)


def _unsupported(reasons: list[str]) -> str:
    return "UNSUPPORTED: " + "; ".join(reasons[:3]) + (" …" if len(reasons) > 3 else "")
