"""`explainer check`: what a model looks like to us, which ops we support, and what canonicalisation changes."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import onnx

from explainer.errors import ExplainerError, UnsupportedOpError, shorten
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
    family: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def format(self) -> str:
        """The report, its one-line verdict first (the error without the source, which the next line names)."""
        error = self.error.removeprefix(f"{self.source}: ") if self.error else None
        lines = ["result: " + (f"cannot be explained: {error}" if error else "can be explained")]
        lines += [f"model: {self.source}", "inputs:"] + [f"  {i}" for i in self.inputs]
        lines += ["outputs:"] + [f"  {o}" for o in self.outputs]
        lines.append(f"input layout: {self.layout or 'unknown'}")
        lines.append("ops:")
        width = max((len(op) for op, _, _ in self.ops), default=2)
        lines += [f"  {op:<{width}}  ×{count:<4} {status}" for op, count, status in self.ops]
        if self.family:
            lines.append(f"family: looks like {self.family}")
        if self.changes:
            lines.append("canonicalisation:")
            lines += [f"  - {c}" for c in self.changes]
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
    error, changes, folded, removed, unsupported, reasons = None, [], {}, {}, {}, {}
    try:
        graph = canonicalise(proto, source, input_shape=input_shape)
        changes, folded, removed, layout = graph.changes, graph.folded_ops, graph.removed_ops, graph.layout
    except UnsupportedOpError as exc:
        error, unsupported, reasons = str(exc), exc.by_op, exc.reasons
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
            status = _unsupported(op, unsupported[op], reasons, count)
        elif op in folded and folded[op] == count:
            status = "folded (constant/shape computation)"
        elif op in removed and removed[op] == count:
            status = "removed (no effect on the explanation)"
        elif op in CONVERTERS:
            status = "supported" + (f" ({folded[op]} folded)" if op in folded else "")
        elif op in folded:
            status = "folded (constant/shape computation)"
        elif unsupported:  # conversion lists every node it refuses: this op's nodes were folded or removed first
            status = "folded or removed (no converter needed)"
        elif error is not None:
            status = "not checked (the model was refused before its ops were converted)"
        else:
            status = "UNSUPPORTED"
        ops.append((op, count, status))
    for op in sorted(set(unsupported) - set(counts)):  # ops inside model-local functions
        ops.append((op, len(unsupported[op]), _unsupported(op, unsupported[op], reasons, len(unsupported[op]))))
    return CheckReport(source, inputs, outputs, layout, ops, changes, error, model_family(proto))


def _unsupported(op: str, names: list[str], reasons: dict[str, str], count: int) -> str:
    """The status of an op with unsupported nodes: how many (if not all of ``count``), and its first node with its
    converter's reason, however many there are (the error names them all in ``nodes``)."""
    share = f" ({len(names)} of {count})" if len(names) != count else ""
    reason = shorten(reasons.get(names[0], f"no converter for {op}"), 240)
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return f"UNSUPPORTED{share}: {reason} (node '{shorten(names[0], 100)}'{more})"


#: ops that tell what kind of network a model is (compared without their domain: com.microsoft's count too)
_RECURRENT = ("LSTM", "GRU", "RNN")
_DETECTION = ("NonMaxSuppression", "RoiAlign", "MaxRoiPool")
_ATTENTION = ("Attention", "MultiHeadAttention", "GroupQueryAttention")
_TRANSFORMER_HINTS = ("LayerNormalization", "SkipLayerNormalization", "Softmax")
#: ops whose output depends on their input's shape only, not on its values
_SHAPE_ONLY = ("Shape", "Size")


def model_family(model: onnx.ModelProto) -> str | None:
    """The kind of network ``model`` looks like from its ops, with the ops that say so (e.g. "a recurrent network
    (LSTM)"); None for none we know of, such as the convolutional classifiers and MLPs we explain."""
    present = {n.op_type for n in model.graph.node}

    def named(candidates: tuple[str, ...]) -> list[str]:
        return [op for op in candidates if op in present]

    if named(_RECURRENT):
        return f"a recurrent network ({', '.join(named(_RECURRENT))})"
    if named(_DETECTION):
        return f"a detection model ({', '.join(named(_DETECTION))})"
    products = [f"{op} between activations" for op in _activation_products(model)]
    if named(_ATTENTION) or products:
        return f"a transformer ({', '.join(named(_ATTENTION) + named(_TRANSFORMER_HINTS) + products)})"
    return None


def _activation_products(model: onnx.ModelProto) -> list[str]:
    """The ops (MatMul, Einsum) of nodes that multiply two tensors computed from the input, as attention does
    (queries by keys, weights by values), unlike a layer, whose second operand is a weight."""
    inits = {t.name for t in model.graph.initializer}
    data = {i.name for i in model.graph.input if i.name not in inits}
    found: list[str] = []
    for node in model.graph.node:
        operands = [name for name in node.input if name in data]
        if operands and node.op_type not in _SHAPE_ONLY:
            data.update(node.output)
        if node.op_type in ("MatMul", "Einsum") and len(operands) >= 2 and node.op_type not in found:
            found.append(node.op_type)
    return found
