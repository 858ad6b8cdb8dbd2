"""Walk a canonical graph and write one ONNX graph that returns the logits and the relevance of a target class.

The rewriter only walks: each node's forward and backward nodes come from its emitter (``emitters/``), each node's
rule from the composite (``composites.py``). Interface of the result: inputs = the model's input and ``target``
(int64 [N]); outputs = ``logits`` [N, classes] and ``relevance`` (same shape as the input).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from explainer.errors import ModelError, UnsupportedOpError
from explainer.frontend.ir import CanonicalGraph, CNode
from explainer.lrp.composites import LINEAR_KINDS, Composite, Layer
from explainer.onnx_io import InMemoryModel
from explainer.relevance.bounds import expand_bounds
from explainer.relevance.builder import GraphBuilder
from explainer.relevance.emitters import EMITTERS, EmitContext, is_nonnegative

OPSET = 17
IR_VERSION = 8
TARGET = "target"
LOGITS = "logits"
RELEVANCE = "relevance"

_NONNEG_INHERIT = {"MaxPool", "AveragePool", "GlobalAveragePool", "Reshape", "Transpose", "Slice", "LRN"}


def _check_emitters(graph: CanonicalGraph) -> None:
    missing = [(n.name, n.op) for n in graph.nodes if n.op not in EMITTERS]
    if missing:
        raise UnsupportedOpError(missing, "canonical graph")


def _nonnegative(graph: CanonicalGraph, input_nonneg: bool) -> set[str]:
    nonneg = {graph.input_name} if input_nonneg else set()
    for node in graph.nodes:
        ins = all(i in nonneg for i in node.inputs)
        if node.op == "Activation" and is_nonnegative(node):
            nonneg.add(node.output)
        elif node.op in _NONNEG_INHERIT and ins:
            nonneg.add(node.output)
        elif node.op == "Pad" and ins and node.attrs["value"] >= 0:
            nonneg.add(node.output)
        elif node.op in ("Add", "Concat") and ins and all(
                isinstance(p, int) or np.all(p >= 0) for p in node.attrs.get("pieces", [])):
            nonneg.add(node.output)
        elif node.op == "Mul" and node.inputs[0] in nonneg:
            nonneg.add(node.output)
    return nonneg


def _activation_name(node: CNode) -> str | None:
    if node.op != "Activation":
        return None
    kind = node.attrs["kind"]
    return "relu6" if kind == "clip" and node.attrs["min"] == 0.0 else kind


def layer_info(graph: CanonicalGraph) -> dict[str, Layer]:
    """The Layer record (kind, first-ness) of every node, keyed by its output tensor."""
    linear_upstream: dict[str, bool] = {graph.input_name: False}
    layers: dict[str, Layer] = {}
    for node in graph.nodes:
        emitter = EMITTERS[node.op]
        upstream = any(linear_upstream.get(i, False) for i in node.inputs)
        kind = emitter.kind
        layers[node.output] = Layer(kind=kind or "structural", name=node.name, op=node.op,
                                    first=kind in LINEAR_KINDS and not upstream,
                                    activation=_activation_name(node))
        linear_upstream[node.output] = upstream or kind in LINEAR_KINDS
    return layers


def _propagate_bounds(graph: CanonicalGraph, low: np.ndarray, high: np.ndarray) -> dict[str, tuple]:
    """Carry [low, high] from the model input through shape/affine ops to the tensors that feed linear layers."""
    bounds = {graph.input_name: (low, high)}
    for node in graph.nodes:
        if not node.inputs or node.inputs[0] not in bounds:
            continue
        lo, hi = bounds[node.inputs[0]]
        if node.op == "Transpose":
            bounds[node.output] = (lo.transpose(node.attrs["perm"]), hi.transpose(node.attrs["perm"]))
        elif node.op == "Affine":
            s, t = node.params["scale"], node.params["shift"]
            a, b = lo * s + t, hi * s + t
            bounds[node.output] = (np.minimum(a, b), np.maximum(a, b))
        elif node.op == "Pad":
            rank = lo.ndim
            width = [(node.attrs["pads"][i], node.attrs["pads"][i + rank]) for i in range(rank)]
            value = node.attrs["value"]
            bounds[node.output] = (np.pad(lo, width, constant_values=value), np.pad(hi, width, constant_values=value))
        elif node.op == "Reshape":
            target = [1] + node.attrs["shape"][1:]
            bounds[node.output] = (lo.reshape(target), hi.reshape(target))
    return {k: (np.ascontiguousarray(v[0], np.float32), np.ascontiguousarray(v[1], np.float32))
            for k, v in bounds.items()}


def _value_info(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _make_model(graph: CanonicalGraph, b: GraphBuilder, outputs: list[onnx.ValueInfoProto],
                extra_inputs: list[onnx.ValueInfoProto], name: str) -> InMemoryModel:
    batch = "N" if graph.batch_dynamic else 1
    inputs = [_value_info(graph.input_name, [batch, *graph.input_shape])] + extra_inputs
    g = helper.make_graph(b.nodes, name, inputs, outputs)
    return InMemoryModel.from_arrays(g, b.arrays, OPSET, IR_VERSION)


def _emit_forward(graph: CanonicalGraph, ctx: EmitContext) -> None:
    ctx.b.reserve(graph.input_name)
    for node in graph.nodes:
        ctx.b.reserve(node.output)
    for node in graph.nodes:
        EMITTERS[node.op].forward(ctx, node)


def build_forward_model(graph: CanonicalGraph) -> InMemoryModel:
    """The canonical graph's forward pass alone (input -> ``logits``): used for checks and perturbation scoring."""
    _check_emitters(graph)
    b = GraphBuilder()
    ctx = EmitContext(b, graph)
    _emit_forward(graph, ctx)
    batch = "N" if graph.batch_dynamic else 1
    b.op("Identity", [graph.output_name], out_names=[LOGITS])
    return _make_model(graph, b, [_value_info(LOGITS, [batch, graph.num_classes])], [], "explainer_forward")


def build_relevance_model(graph: CanonicalGraph, composite: Composite, *, low=None, high=None) -> InMemoryModel:
    """The relevance graph for ``composite`` (``low``/``high``: input bounds for the zB rule, in model input space)."""
    _check_emitters(graph)
    b = GraphBuilder()
    ctx = EmitContext(b, graph)
    per_sample = (1, *graph.input_shape)
    input_nonneg = False
    if low is not None and high is not None:
        lo = expand_bounds(low, per_sample, graph.layout)
        hi = expand_bounds(high, per_sample, graph.layout)
        ctx.bounds = _propagate_bounds(graph, lo, hi)
        input_nonneg = bool(np.all(lo >= 0))
    elif composite.needs_bounds:
        raise ModelError(f"method '{composite.name}' needs the input bounds low/high")
    ctx.nonneg = _nonnegative(graph, input_nonneg)
    layers = layer_info(graph)
    _emit_forward(graph, ctx)
    b.op("Identity", [graph.output_name], out_names=[LOGITS])
    b.reserve(TARGET)
    onehot = b.op("OneHot", [TARGET, b.const([graph.num_classes], dtype=np.int64), b.const([0.0, 1.0])], "onehot",
                  axis=-1)
    seed = onehot if composite.seed == "one" else b.mul(onehot, graph.output_name, "seed")
    relevance: dict[str, list[str]] = {graph.output_name: [seed]}
    for node in reversed(graph.nodes):
        incoming = relevance.pop(node.output, None)
        if not incoming:
            continue
        r = b.sum(incoming, f"{node.name}_rout")
        layer = layers[node.output]
        rule = composite.rule_for(layer)
        results = EMITTERS[node.op].backward(ctx, node, rule, r)
        for name, r_in in zip(node.inputs, results):
            if r_in is not None:
                relevance.setdefault(name, []).append(r_in)
    incoming = relevance.get(graph.input_name)
    if incoming:
        r = b.sum(incoming, "input_relevance")
    else:
        r = b.mul(graph.input_name, b.const(0.0), "input_relevance")
    if composite.times_input:
        r = b.mul(r, graph.input_name, "times_input")
    b.op("Identity", [r], out_names=[RELEVANCE])
    batch = "N" if graph.batch_dynamic else 1
    outputs = [_value_info(LOGITS, [batch, graph.num_classes]), _value_info(RELEVANCE, [batch, *graph.input_shape])]
    target = helper.make_tensor_value_info(TARGET, TensorProto.INT64, [batch])
    model = _make_model(graph, b, outputs, [target], f"explainer_{composite.name}")
    doc = {"method": composite.name, "description": composite.description}
    for key, value in doc.items():
        entry = model.skeleton.metadata_props.add()
        entry.key, entry.value = f"explainer.{key}", str(value)
    return model


__all__ = ["build_forward_model", "build_relevance_model", "layer_info", "expand_bounds"]
