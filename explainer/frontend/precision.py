"""Float16 and bfloat16 models computed in float32.

Relevance is computed in float32: reduced-precision sums lose the small contributions LRP conserves, and ONNX Runtime
runs few bfloat16 ops on the CPU. ``to_float32`` gives a float32 copy of a model whose weights, inputs, outputs or
intermediate casts are float16 or bfloat16 (mixed-precision exports: a float32 input cast to float16 and back), and
says what it converted; ``Float32Model.deviation`` measures how far the copy's scores lie from the reduced-precision
model's own (ONNX Runtime, one test input), so the user knows what the float32 computation changes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from explainer.errors import describe
from explainer.onnx_io import EXTERNAL_MIN_BYTES, InMemoryModel, external_reference, tensor_array

#: the reduced-precision float types, by name
REDUCED = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}
#: integer node attributes that name an element type (Cast.to, EyeLike/Random*/Bernoulli.dtype,
#: DequantizeLinear.output_dtype)
_TYPE_ATTRIBUTES = ("to", "dtype", "output_dtype")


@dataclass
class Float32Model:
    """The float32 copy (``model``, with ``weights`` kept out of its protobuf as ``InMemoryModel.external``), what
    was converted in words (``changes``; empty for a model that was float32 already, which is then ``model`` itself),
    the reduced types met, and the original model to compare against."""

    model: onnx.ModelProto
    weights: dict[str, np.ndarray]
    changes: list[str]
    types: tuple[str, ...] = ()
    original: onnx.ModelProto | None = field(default=None, repr=False)
    original_weights: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def deviation(self, feeds: dict[str, np.ndarray]) -> str:
        """The ``changes`` line for how far the float32 copy's first output lies from the original's for ``feeds``
        (a value per input, e.g. canonicalise's reference sample; float ones are rounded to the original input's type
        first, so that only the computation differs); empty when nothing was converted. A model ONNX Runtime cannot
        run in its own precision (bfloat16 convolutions on the CPU, say) is said to be not compared, with the
        reason."""
        if self.original is None:
            return ""
        kind = "/".join(self.types)
        try:
            ours, theirs = _outputs(self, feeds)
        except Exception as exc:
            return f"the float32 scores were not compared with the {kind} model's (ONNX Runtime cannot run it: " \
                   f"{describe(exc, 200)})"
        gap = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
        largest = float(np.max(np.abs(theirs))) if theirs.size else 0.0
        share = f" ({gap / largest:.2%} of the largest score)" if largest > 0 else ""
        return f"the float32 scores differ from the {kind} model's (as ONNX Runtime runs it on the CPU) by up to " \
               f"{gap:.3g}{share} on a test input"


def to_float32(model: onnx.ModelProto, weights: dict[str, np.ndarray] | None = None,
               source: str = "model") -> Float32Model:
    """A float32 copy of ``model``: float16/bfloat16 initializers (``weights``, the arrays kept outside the protobuf,
    among them), Constant and ConstantOfShape values, element types named by node attributes (a Cast to float16
    becomes a Cast to float32), and the types of inputs, outputs and value infos, in the main graph and in
    model-local functions. Converted initializers of at least ``EXTERNAL_MIN_BYTES`` are kept outside the copy's
    protobuf. ``model`` and ``weights`` are not changed; a model without reduced types is returned as it is."""
    weights = dict(weights or {})
    if not _has_reduced(model):
        return Float32Model(model, weights, [])
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    counts: Counter = Counter()
    types: set[str] = set()
    new_weights = _convert_initializers(copy.graph, weights, counts, types, source)
    for tensor in copy.graph.sparse_initializer:
        if _convert_tensor(tensor.values, source, types):
            counts[("sparse initializer", "")] += 1
    nodes = list(copy.graph.node) + [n for f in copy.functions for n in f.node]
    for node in nodes:
        _convert_node(node, counts, types, source)
    inputs = _convert_values(copy.graph.input, types, skip={t.name for t in copy.graph.initializer})
    outputs = _convert_values(copy.graph.output, types)
    _convert_values(copy.graph.value_info, types)
    for function in copy.functions:
        _convert_values(function.value_info, types)
    kinds = tuple(t for t in REDUCED.values() if t in types)
    return Float32Model(copy, new_weights, [_describe(kinds, counts, inputs, outputs)], kinds, model, weights)


def _has_reduced(model: onnx.ModelProto) -> bool:
    """Whether anything in ``model`` declares a reduced float type (cheap: no tensor data is read)."""
    graph = model.graph
    if any(t.data_type in REDUCED for t in graph.initializer) \
            or any(t.values.data_type in REDUCED for t in graph.sparse_initializer):
        return True
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    if any(v.type.tensor_type.elem_type in REDUCED for v in values):
        return True
    nodes = list(graph.node) + [n for f in model.functions for n in f.node]
    return any(_reduced_attribute(a) for n in nodes for a in n.attribute)


def _reduced_attribute(a: onnx.AttributeProto) -> bool:
    if a.type == onnx.AttributeProto.INT:
        return a.name in _TYPE_ATTRIBUTES and a.i in REDUCED
    if a.type == onnx.AttributeProto.TENSOR:
        return a.t.data_type in REDUCED
    if a.type == onnx.AttributeProto.TENSORS:
        return any(t.data_type in REDUCED for t in a.tensors)
    if a.type == onnx.AttributeProto.SPARSE_TENSOR:
        return a.sparse_tensor.values.data_type in REDUCED
    return False


def _convert_initializers(graph: onnx.GraphProto, weights: dict[str, np.ndarray], counts: Counter, types: set[str],
                          source: str) -> dict[str, np.ndarray]:
    """Replace ``graph``'s reduced-precision initializers by float32 ones; returns the arrays the new graph keeps
    outside its protobuf (``weights``' own, converted where reduced, and the large converted ones)."""
    kept = dict(weights)
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type not in REDUCED:
            continue
        types.add(REDUCED[tensor.data_type])
        counts[(f"{REDUCED[tensor.data_type]} initializer", "")] += 1
        held = weights.get(tensor.name)
        array = (held if held is not None else tensor_array(tensor, source, f"initializer '{tensor.name}'"))
        array = array.astype(np.float32)
        if array.nbytes >= EXTERNAL_MIN_BYTES:
            graph.initializer[i].CopyFrom(external_reference(tensor.name, array))
            kept[tensor.name] = array
        else:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(array, tensor.name))
            kept.pop(tensor.name, None)
    return kept


def _convert_tensor(tensor: onnx.TensorProto, source: str, types: set[str]) -> bool:
    """Make ``tensor`` float32 in place when it is reduced-precision; whether it was."""
    if tensor.data_type not in REDUCED:
        return False
    types.add(REDUCED[tensor.data_type])
    array = tensor_array(tensor, source, f"tensor '{tensor.name}'").astype(np.float32)
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    return True


def _convert_node(node: onnx.NodeProto, counts: Counter, types: set[str], source: str) -> None:
    """Make ``node``'s reduced-precision attribute values (tensors, element types) float32 in place."""
    for a in node.attribute:
        if a.type == onnx.AttributeProto.INT and a.name in _TYPE_ATTRIBUTES and a.i in REDUCED:
            types.add(REDUCED[a.i])
            counts[(node.op_type, f" to {REDUCED[a.i]}" if a.name == "to" else f" {a.name}={REDUCED[a.i]}")] += 1
            a.i = onnx.TensorProto.FLOAT
        elif a.type == onnx.AttributeProto.TENSOR and _convert_tensor(a.t, source, types):
            counts[(f"{node.op_type} value", "")] += 1
        elif a.type == onnx.AttributeProto.TENSORS:
            counts[(f"{node.op_type} value", "")] += sum(_convert_tensor(t, source, types) for t in a.tensors)
        elif a.type == onnx.AttributeProto.SPARSE_TENSOR and _convert_tensor(a.sparse_tensor.values, source, types):
            counts[(f"{node.op_type} value", "")] += 1


def _convert_values(values: list[onnx.ValueInfoProto], types: set[str], skip: frozenset | set = frozenset()
                    ) -> list[str]:
    """Make the reduced-precision tensor types among ``values`` float32 in place; returns the names changed (those
    in ``skip`` changed but not returned)."""
    changed = []
    for value in values:
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type in REDUCED:
            types.add(REDUCED[tensor_type.elem_type])
            tensor_type.elem_type = onnx.TensorProto.FLOAT
            if value.name not in skip:
                changed.append(value.name)
    return changed


def _describe(kinds: tuple[str, ...], counts: Counter, inputs: list[str], outputs: list[str]) -> str:
    """The ``changes`` line for a conversion; ``counts`` is keyed by (noun, what follows it): ('Cast', ' to
    float16')."""
    parts = [f"{count} {noun}{'s' if count != 1 else ''}{suffix}" for (noun, suffix), count in sorted(counts.items())
             if count]
    if inputs:
        parts.append("input " + ", ".join(f"'{n}'" for n in inputs) + " (its values are cast to float32)")
    if outputs:
        parts.append("output " + ", ".join(f"'{n}'" for n in outputs))
    return f"computed in float32 (the model is {'/'.join(kinds)}): " + "; ".join(parts)


def _outputs(converted: Float32Model, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The first output of the float32 copy and of the original for ``feeds`` (float ones in the original's input
    types, and the same values in float32 for the copy), both as float64."""
    from explainer.runtime.sessions import make_session

    original = converted.original
    declared = {v.name: v.type.tensor_type.elem_type for v in original.graph.input}
    theirs = {name: value.astype(onnx.helper.tensor_dtype_to_np_dtype(declared[name])) if value.dtype.kind == "f"
              else value for name, value in feeds.items()}
    ours = {name: value.astype(np.float32) if declared[name] in REDUCED else value for name, value in theirs.items()}
    output = original.graph.output[0].name
    values = []
    for model, weights, fed in ((converted.model, converted.weights, ours),
                                (original, converted.original_weights, theirs)):
        session = make_session(InMemoryModel(model, weights), "cpu", optimize="basic", one_shot=True)
        values.append(np.asarray(session.run([output], fed)[0]).astype(np.float64))
    return values[0], values[1]
