"""Bring an exported ONNX classifier into canonical form (see ``ir.py``) without changing its logits.

What happens here, in order: find the one image input and pin its per-sample shape; run the model once in ONNX
Runtime to learn every tensor's value/shape; fold everything that does not depend on the input's values (initializers,
Constant/ConstantOfShape weights, Shape->Gather->Concat flatten chains); convert each remaining node with its
converter (BatchNorm and Mul/Add with constants become Affine, MatMul+Add become Dense, a final Softmax is dropped,
Identity/Dropout vanish); then fold Affine nodes into the linear layer before them where that is exact.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

from explainer.errors import ModelError, UnsupportedOpError
from explainer.frontend.convert import Alias, ConvertContext, NotSupported
from explainer.frontend.fold import evaluate_constant_node, run_probe, tensor_types, with_input_shape
from explainer.frontend.inputs import detect_layout, image_input, model_opset, resolve_input_shape
from explainer.frontend.ir import CanonicalGraph, CNode
from explainer.frontend.simplify import simplify
from explainer.onnx_io import InMemoryModel
from explainer.ops import CONVERTERS

_OUTPUT_CHAIN_OPS = {"Softmax", "LogSoftmax", "Identity", "Dropout", "Cast", "Flatten", "Reshape", "Squeeze"}


def _output_chain(model: onnx.ModelProto, output: str) -> set[str]:
    producers = {o: n for n in model.graph.node for o in n.output}
    chain, name = {output}, output
    while name in producers and producers[name].op_type in _OUTPUT_CHAIN_OPS:
        name = producers[name].input[0]
        chain.add(name)
    return chain


def _describe_alias(node: onnx.NodeProto) -> str:
    return f"dropped {node.op_type} '{node.name or node.output[0]}'"


def canonicalise(model: onnx.ModelProto, source: str, *,
                 input_shape: tuple[int, ...] | None = None) -> CanonicalGraph:
    """Canonical graph of ``model``; raises ModelError / UnsupportedOpError naming every node at fault."""
    graph = model.graph
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise UnsupportedOpError([(node.name or node.output[0], node.op_type)], source)
    vi = image_input(model, source)
    shape, rank = resolve_input_shape(vi, source, input_shape)
    if not graph.output:
        raise ModelError(f"{source}: the model has no outputs")
    output = graph.output[0].name
    opset = model_opset(model)
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    probe_model = InMemoryModel.from_model(model, consts)
    with_input_shape(probe_model.skeleton, vi.name, ("N", *shape[1:]))
    types = tensor_types(probe_model.skeleton)
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, *shape[1:])).astype(np.float32)
    values = run_probe(probe_model, vi.name, x1, source, types)
    data: set[str] = {vi.name}
    data_nodes: list[onnx.NodeProto] = []
    folded: Counter = Counter()
    removed: Counter = Counter()
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            data_nodes.append(node)
            data.update(o for o in node.output if o)
            continue
        reads_data = any(i in data for i in node.input if i)
        if reads_data and node.op_type not in ("Shape", "Size"):
            data_nodes.append(node)
            data.update(o for o in node.output if o)
            continue
        missing = [o for o in node.output if o and o not in values]
        if missing and all(i in consts for i in node.input if i):
            values.update(evaluate_constant_node(node, consts, opset))
            missing = [o for o in node.output if o and o not in values]
        if missing:
            data_nodes.append(node)
            data.update(o for o in node.output if o)
            continue
        consts.update({o: values[o] for o in node.output if o})
        folded[node.op_type] += 1
    shapes = {name: tuple(int(d) for d in values[name].shape) for name in data if name in values}
    shapes[vi.name] = (1, *shape[1:])
    if output not in shapes:
        raise ModelError(f"{source}: output '{output}' does not depend on the input")
    producers = {o: n for n in data_nodes for o in n.output}
    ctx = ConvertContext(consts, data, shapes, opset, producers, _output_chain(model, output))
    aliases: dict[str, str] = {}
    nodes: list[CNode] = []
    changes: list[str] = []
    unsupported: list[tuple[str, str]] = []
    reasons: dict[str, str] = {}
    for node in data_nodes:
        conv = CONVERTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        label = node.name or node.output[0]
        if conv is None:
            unsupported.append((label, node.op_type if node.domain in ("", "ai.onnx")
                                else f"{node.domain}.{node.op_type}"))
            continue
        resolved = onnx.NodeProto()
        resolved.CopyFrom(node)
        for i, name in enumerate(resolved.input):
            resolved.input[i] = aliases.get(name, name)
        try:
            result = conv(ctx, resolved)
        except NotSupported as exc:
            unsupported.append((label, node.op_type))
            reasons[label] = str(exc)
            continue
        if isinstance(result, Alias):
            aliases[node.output[0]] = aliases.get(result.source, result.source)
            changes.append(result.reason or _describe_alias(node))
            removed[node.op_type] += 1
            continue
        nodes.extend(result)
        if node.op_type in ("Flatten", "Reshape", "Squeeze", "Unsqueeze") and len(node.input) > 1 \
                and node.input[1] in consts and node.input[1] not in {t.name for t in graph.initializer}:
            changes.append(f"static Reshape for {node.op_type} '{label}' (shape computed by folded nodes)")
    if unsupported:
        err = UnsupportedOpError(unsupported, source)
        if reasons:
            details = "; ".join(f"'{k}': {v}" for k, v in reasons.items())
            err.args = (f"{err.args[0]} [{details}]",)
        err.reasons = reasons
        raise err
    out_name = aliases.get(output, output)
    if out_name == vi.name:
        raise ModelError(f"{source}: the output is the input; nothing to explain")
    out_shape = shapes[out_name]
    reference = values[out_name] if out_name in values else None
    if int(np.prod(out_shape[1:])) != max(out_shape[1:] or (1,)):
        raise ModelError(f"{source}: output '{output}' has per-sample shape {list(out_shape[1:])}; "
                         "expected a vector of class scores")
    if len(out_shape) != 2:
        flat = out_name + "__scores"
        shapes[flat] = (1, int(np.prod(out_shape[1:])))
        nodes.append(CNode("Reshape", [out_name], flat, "scores_flatten", "Reshape", {"shape": [-1, shapes[flat][1]]}))
        changes.append(f"flattened output of shape {list(out_shape[1:])} to a score vector")
        out_name = flat
    if folded:
        changes.insert(0, "folded constant/shape nodes: " + ", ".join(f"{k}×{v}" for k, v in sorted(folded.items())))
    cg = CanonicalGraph(input_name=vi.name, input_shape=tuple(shape[1:]), layout=detect_layout(model, vi, shape),
                        output_name=out_name, nodes=nodes, shapes=shapes, changes=changes,
                        source_ops=dict(Counter(n.op_type for n in graph.node)),
                        reference=(x1, np.asarray(reference, np.float32).reshape(1, -1)),
                        folded_ops=dict(folded), removed_ops=dict(removed), opset=opset)
    simplify(cg)
    _rename_reserved(cg, source)
    return cg


RESERVED = ("logits", "relevance", "target")


def _rename_reserved(cg: CanonicalGraph, source: str) -> None:
    """Keep the names the relevance graph's interface uses free (a model's own output is often called 'logits')."""
    if cg.input_name in RESERVED:
        raise ModelError(f"{source}: the model's input is named '{cg.input_name}', which the relevance graph "
                         "reserves for its own interface; rename the input")
    rename = {name: f"{name}__model" for name in cg.shapes if name in RESERVED}
    if not rename:
        return
    for node in cg.nodes:
        node.inputs = [rename.get(i, i) for i in node.inputs]
        node.output = rename.get(node.output, node.output)
    cg.shapes.update({new: cg.shapes[old] for old, new in rename.items()})
    cg.output_name = rename.get(cg.output_name, cg.output_name)


__all__ = ["canonicalise", "image_input", "model_opset"]
