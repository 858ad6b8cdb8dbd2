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

from .converters import CONVERTERS, Alias, ConvertContext, NotSupported
from .errors import InputError, ModelError, UnsupportedOpError
from .ir import CanonicalGraph, CNode
from .layout import detect_layout
from .model_io import InMemoryModel
from .probe import run_probe, tensor_types, with_input_shape

_OUTPUT_CHAIN_OPS = {"Softmax", "LogSoftmax", "Identity", "Dropout", "Cast", "Flatten", "Reshape", "Squeeze"}


def model_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def image_input(model: onnx.ModelProto, source: str) -> onnx.ValueInfoProto:
    """The model's single non-initializer input (error naming what was found otherwise)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not inputs:
        raise ModelError(f"{source}: the model has no inputs")
    if len(inputs) > 1:
        names = ", ".join(f"'{i.name}'" for i in inputs)
        raise ModelError(f"{source}: the model has {len(inputs)} inputs ({names}); only single-input image "
                         "classifiers can be explained")
    return inputs[0]


def resolve_input_shape(vi: onnx.ValueInfoProto, source: str,
                        input_shape: tuple[int, ...] | None) -> tuple[tuple[int | None, ...], int]:
    """The input's shape with the batch axis as None, filling dynamic dims from ``input_shape``."""
    ttype = vi.type.tensor_type
    if ttype.elem_type != onnx.TensorProto.FLOAT:
        raise ModelError(f"{source}: input '{vi.name}' has element type "
                         f"{onnx.TensorProto.DataType.Name(ttype.elem_type)}; only float32 inputs are supported")
    if not ttype.HasField("shape"):
        if input_shape is None:
            raise InputError(f"{source}: input '{vi.name}' has no shape; pass input_shape=(C, H, W)")
        return (None, *input_shape), len(input_shape) + 1
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in ttype.shape.dim]
    rank = len(dims)
    if rank < 2:
        raise ModelError(f"{source}: input '{vi.name}' has rank {rank}; expected a batch of images (N, C, H, W)")
    if input_shape is not None:
        given = list(input_shape)
        if len(given) == rank:
            given = given[1:]
        if len(given) != rank - 1:
            raise InputError(f"{source}: input_shape {tuple(input_shape)} does not fit input '{vi.name}' of rank "
                             f"{rank}")
        for i, (have, want) in enumerate(zip(dims[1:], given), start=1):
            if have is not None and want is not None and have != want:
                raise InputError(f"{source}: input_shape {tuple(input_shape)} conflicts with the model's fixed dim "
                                 f"{i} = {have} of input '{vi.name}'")
            if have is None:
                dims[i] = want
    missing = [i for i, d in enumerate(dims[1:], start=1) if d is None]
    if missing:
        raise InputError(f"{source}: input '{vi.name}' has dynamic dims {missing} "
                         f"(shape {[d if d else '?' for d in dims]}); pass input_shape / --size")
    return (None, *dims[1:]), rank


def _evaluate_constant_node(node: onnx.NodeProto, consts: dict[str, np.ndarray], opset: int) -> dict[str, np.ndarray]:
    """Values of a node whose inputs are all constant, with ONNX's reference evaluator (used where type inference
    could not name the outputs' types, so the ONNX Runtime probe left them out)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    feeds = {name: consts[name] for name in node.input if name}
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype),
                                            list(np.shape(v))) for name, v in feeds.items()]
    graph = helper.make_graph([node], "constant", inputs, [helper.make_value_info(o, onnx.TypeProto())
                                                           for o in node.output if o])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:
        return {}
    return {name: np.asarray(value) for name, value in zip(node.output, results) if name}


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
            values.update(_evaluate_constant_node(node, consts, opset))
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
                        check=(x1, np.asarray(reference, np.float32).reshape(1, -1)),
                        folded_ops=dict(folded), removed_ops=dict(removed))
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


def _remove_dead(cg: CanonicalGraph) -> None:
    needed = {cg.output_name}
    keep = []
    for node in reversed(cg.nodes):
        if node.output in needed:
            keep.append(node)
            needed.update(node.inputs)
    cg.nodes = list(reversed(keep))


def _per_channel(arr: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray | None:
    """``arr`` as a [C] vector if it broadcasts along axis 1 only of a tensor of ``out_shape``."""
    rank, channels = len(out_shape), out_shape[1]
    if arr.ndim > rank:
        return None
    full = (1,) * (rank - arr.ndim) + arr.shape
    if any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, channels):
        return None
    return np.broadcast_to(arr.reshape(-1), (channels,)).astype(np.float32)


def _absorb_affines(cg: CanonicalGraph, absorb) -> None:
    """Walk the Affine nodes in order; ``absorb(node, producers, consumers, removed)`` returns the tensor that
    replaces the node's output (the node is then dropped), or None to keep it (it may drop others via ``removed``)."""
    producers, consumers = cg.producer(), cg.consumers()
    removed: set[int] = set()
    rename: dict[str, str] = {}
    for node in cg.nodes:
        node.inputs = [rename.get(i, i) for i in node.inputs]
        if node.op != "Affine" or id(node) in removed:
            continue
        replacement = absorb(node, producers, consumers, removed)
        if replacement is not None:
            rename[node.output] = replacement
            if cg.output_name == node.output:
                cg.output_name = replacement
            removed.add(id(node))
            consumers = cg.consumers()
    cg.nodes = [n for n in cg.nodes if id(n) not in removed]


def _fold_into_linear(cg: CanonicalGraph, node: CNode, producers, consumers, removed) -> str | None:
    """Affine right after a Conv/Dense (its only consumer) with per-channel scale/shift: fold it into the layer."""
    prev = producers.get(node.inputs[0])
    if prev is None or prev.op not in ("Conv", "Dense") or len(consumers.get(prev.output, [])) != 1 \
            or prev.output == cg.output_name:
        return None
    shape = cg.shapes[prev.output]
    scale = _per_channel(node.params["scale"], shape)
    shift = _per_channel(node.params["shift"], shape)
    if scale is None or shift is None:
        return None
    w = prev.params["W"]
    prev.params["W"] = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1)) if prev.op == "Conv"
                        else w * scale.reshape(1, -1)).astype(np.float32)
    prev.params["B"] = (prev.params["B"] * scale + shift).astype(np.float32)
    cg.changes.append(f"folded {node.source_op} '{node.name}' into {prev.source_op} '{prev.name}'")
    return prev.output


def _merge_with_previous(cg: CanonicalGraph, node: CNode, producers, consumers, removed) -> str | None:
    """Identity affines vanish; an affine after another affine (its only consumer) absorbs it."""
    s, t = node.params["scale"], node.params["shift"]
    if np.all(s == 1) and np.all(t == 0) and node.output != cg.output_name:
        return node.inputs[0]
    prev = producers.get(node.inputs[0])
    if prev is not None and prev.op == "Affine" and len(consumers.get(prev.output, [])) == 1 \
            and id(prev) not in removed:
        node.params = {"scale": (prev.params["scale"] * s).astype(np.float32),
                       "shift": (prev.params["shift"] * s + t).astype(np.float32)}
        node.inputs = list(prev.inputs)
        removed.add(id(prev))
        cg.changes.append(f"merged {prev.source_op} '{prev.name}' with {node.source_op} '{node.name}'")
    return None


def simplify(cg: CanonicalGraph) -> None:
    """Dead-node removal and exact Affine folding (repeats until nothing changes)."""
    _remove_dead(cg)
    while True:
        before = len(cg.nodes)
        _absorb_affines(cg, lambda *a: _merge_with_previous(cg, *a))
        _absorb_affines(cg, lambda *a: _fold_into_linear(cg, *a))
        _remove_dead(cg)
        if len(cg.nodes) == before:
            break


__all__ = ["canonicalise", "image_input", "model_opset"]
