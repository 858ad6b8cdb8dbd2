"""`explainer check`: what a model looks like to us, which ops we support, and what canonicalisation changes."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import onnx

from explainer.errors import ExplainerError, InputError, UnsupportedOpError, shorten
from explainer.frontend.canonicalise import canonicalise
from explainer.frontend.heads import final_heads
from explainer.frontend.inputs import (
    DEFAULT_DOMAINS,
    companion_default,
    detect_layout,
    image_input,
    pin_inputs,
    select_output,
)
from explainer.frontend.ir import CanonicalGraph
from explainer.frontend.precision import REDUCED, to_float32
from explainer.onnx_io import load_model
from explainer.ops import CONVERTERS


@dataclass
class CheckReport:
    """The result of checking one model; ``ok`` says whether it can be explained (its explained output, the first
    unless one was named). ``inputs`` and ``outputs`` are described with whether each can be explained."""

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
                base_dir: str | os.PathLike | None = None, output: str | None = None,
                input: str | None = None) -> CheckReport:
    """Inspect ``model``; never raises for model problems (they end up in ``error``), only for unreadable files.
    ``base_dir``: the folder of the external data of a model given as bytes or a ModelProto (see ``load_model``);
    ``output``: the output to explain (default: the first; a name the model lacks is an InputError). Every other
    output (up to ``_OTHER_OUTPUTS``) is canonicalised too, to say whether it could be explained instead. ``input``:
    the input that receives relevance when the model has several (see ``pin_inputs``)."""
    proto, source = load_model(model, base_dir)
    inits = {t.name for t in proto.graph.initializer}
    graph_inputs = [i for i in proto.graph.input if i.name not in inits]
    inputs = [f"{_describe(i)}: {status}" for i, status in zip(graph_inputs, _input_roles(proto, source, input))]
    names = [o.name for o in proto.graph.output]
    chosen = output if output is not None else (names[0] if names else None)
    if output is not None and output not in names:
        listed = ", ".join(f"'{n}'" for n in names)
        raise InputError(f"{source}: the model has no output '{output}'; its outputs are {listed}")
    counts = Counter(n.op_type if n.domain in DEFAULT_DOMAINS else f"{n.domain}.{n.op_type}" for n in proto.graph.node)
    layout = None
    try:
        vi = image_input(proto, source)
        dims = vi.type.tensor_type.shape.dim
        layout = detect_layout(proto, vi, tuple(d.dim_value or None for d in dims))
    except ExplainerError:
        pass
    error, changes, folded, removed, unsupported, reasons = None, [], {}, {}, {}, {}
    side: Counter = Counter()
    try:
        graph = _canonical(proto, source, input_shape, chosen, input)
        changes, folded, removed, layout = graph.changes, graph.folded_ops, graph.removed_ops, graph.layout
        side = Counter(n.op_type for n in graph.side_nodes if n.op_type != "Concat" or not n.output[0].endswith(
            "__rest"))
    except UnsupportedOpError as exc:
        error, unsupported, reasons = str(exc), exc.by_op, exc.reasons
    except ExplainerError as exc:
        error = str(exc)
    except MemoryError:
        error = f"{source}: not enough memory to read the model's graph"
    local = {f"{f.domain}.{f.name}" for f in proto.functions}
    heads = Counter(h.node.op_type for h in final_heads(proto, chosen)) if chosen is not None and error is None \
        else Counter()
    ops = []
    for op, count in sorted(counts.items()):
        if op in heads and heads[op] == count:
            status = f"removed (the final {op}: explained from the pre-{_ACTIVATION[op]} logits)"
        elif op in local:
            status = "model-local function (inlined)"
        elif op in unsupported:
            status = _unsupported(op, unsupported[op], reasons, count)
        elif op in folded and folded[op] == count:
            status = "folded (constant/shape computation)"
        elif side[op] and side[op] + folded.get(op, 0) >= count:
            status = "run as is on the fixed inputs (no relevance passes it)"
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
    outputs = []
    for i, vi in enumerate(proto.graph.output):
        if vi.name == chosen:
            status = f"explained{_head(proto, vi.name)}" if error is None else "explained (cannot be: see result)"
        elif i > _OTHER_OUTPUTS:
            status = "not checked"
        else:
            status = _output_status(proto, source, input_shape, vi.name, input)
        outputs.append(f"{_describe(vi)}: {status}")
    return CheckReport(source, inputs, outputs, layout, ops, changes, error, model_family(proto))


#: how many outputs besides the explained one are canonicalised to say whether they can be explained
_OTHER_OUTPUTS = 8


def _canonical(proto: onnx.ModelProto, source: str, input_shape: tuple[int, ...] | None,
               output: str | None, input: str | None = None) -> CanonicalGraph:
    """The canonical graph explaining ``output``; ``proto`` is copied first where picking the output changes it."""
    if output is not None and (len(proto.graph.output) > 1 or final_heads(proto, output)):
        work = onnx.ModelProto()
        work.CopyFrom(proto)
        picked = select_output(work, output, source)
        graph = canonicalise(work, source, input_shape=input_shape, input=input)
        graph.changes[:0] = picked
        return graph
    return canonicalise(proto, source, input_shape=input_shape, input=input)


def _input_roles(proto: onnx.ModelProto, source: str, input: str | None) -> list[str]:
    """For each input: whether it receives relevance (and how: token ids at their embedding), is fed as given, or
    why neither is decided (several candidates: name one with --input)."""
    inits = {t.name for t in proto.graph.initializer}
    names = [i.name for i in proto.graph.input if i.name not in inits]
    reduced = {i.name: REDUCED[i.type.tensor_type.elem_type] for i in proto.graph.input
               if i.type.tensor_type.elem_type in REDUCED}
    try:
        chosen = pin_inputs(to_float32(proto, source=source).model, source, None, input)
    except ExplainerError as exc:
        message = shorten(str(exc).removeprefix(f"{source}: "), 160)
        if "name the one that receives relevance" in message:
            return ["undecided (the model has several inputs: name the explained one with --input)"] * len(names)
        if "dynamic dim" not in message:  # a shape that --size/--input-shape settles is reported below
            return [f"no relevance ({message})"] * len(names)
        chosen = None
    roles = []
    for name in names:
        if chosen is None:
            roles.append("receives relevance" if len(names) == 1 or name == input else "fed as given")
        elif name == chosen.token_input:
            roles.append(f"receives relevance (token ids: at their embedding lookup from '{chosen.embedding}', "
                         "summed per token)")
        elif name == chosen.explained.name:
            roles.append("receives relevance" + (f" (computed in float32; the input is {reduced[name]})"
                                                 if name in reduced else ""))
        else:
            default = companion_default(name)
            roles.append("fed as given, no relevance (fixed input" + (f"; {default} when not given)" if default
                                                                     else ")"))
    return roles


#: what a final head maps its scores through, by op
_ACTIVATION = {"Sigmoid": "sigmoid", "Softmax": "softmax", "LogSoftmax": "softmax"}


def _head(proto: onnx.ModelProto, output: str) -> str:
    heads = final_heads(proto, output)
    if not heads:
        return ""
    ops = sorted({h.node.op_type for h in heads})
    kinds = "/".join(dict.fromkeys(_ACTIVATION[op] for op in ops))
    what = f"final {'/'.join(ops)} is" if len(heads) == 1 else f"{len(heads)} final {'/'.join(ops)} heads are"
    return f" (pre-{kinds} logits: its {what} skipped)"


def _output_status(proto: onnx.ModelProto, source: str, input_shape: tuple[int, ...] | None, output: str,
                   input: str | None = None) -> str:
    """Whether ``output`` could be explained instead (``--output``), and why not."""
    try:
        _canonical(proto, source, input_shape, output, input)
    except ExplainerError as exc:
        return f"cannot be explained ({shorten(str(exc).removeprefix(f'{source}: '), 200)})"
    except MemoryError:
        return "not checked (not enough memory)"
    return f"can be explained with --output {output}{_head(proto, output)}"


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
