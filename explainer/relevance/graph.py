"""Walk a canonical graph and write one ONNX graph that returns the logits and the relevance of a target class.

This module only assembles: each node's forward and backward nodes come from its op (``explainer.ops``), each node's
rule from the composite (``lrp/composites.py``), signs, layer kinds and bounds from ``analysis.py``. Interface of the
result: inputs = the model's inputs and ``target`` (int64 [N]; negative: the arg-max class); outputs = ``logits`` [N,
classes], ``relevance`` (the explained input's shape), ``relevance_<k>`` for the k-th further input that receives
relevance (``CanonicalGraph.also``), ``explained_target`` (int64 [N], the class explained) and, where
constant inputs keep some (class tokens, position embeddings), ``absorbed`` [N, K], labelled by the JSON list in the
metadata entry ``explainer.absorbed``. Both graphs are emitted at the model's own opset, at least ``MIN_OPSET``.
With ``seed_input`` the relevance graph takes ``seed`` (float [N, classes], the relevance at the output as given)
in place of ``target`` and has no ``explained_target``: for seeds that are no single class (several classes at
once, a weighting of all of them).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper

from explainer.errors import InputError, UnsupportedOpError
from explainer.frontend.ir import CanonicalGraph
from explainer.lrp.composites import Composite
from explainer.onnx_io import InMemoryModel
from explainer.ops import OPS
from explainer.relevance.analysis import layer_info, nonnegative, propagate_bounds
from explainer.relevance.bounds import expand_bounds
from explainer.relevance.builder import GraphBuilder
from explainer.relevance.context import MIN_OPSET, EmitContext, output_opset

TARGET = "target"
#: the relevance at the output, [N, classes], of a graph built with ``seed_input``
SEED = "seed"
#: the class each sample's relevance explains: ``target``, or the arg-max class where ``target`` is negative
EXPLAINED = "explained_target"
LOGITS = "logits"
RELEVANCE = "relevance"
#: per-sample relevance kept by constant inputs (class tokens, position embeddings), one column per metadata label
ABSORBED = "absorbed"
#: the batch axis of every emitted graph: dynamic (canonical graphs never bake a batch size in, see the front end)
BATCH = "N"


def _check_ops(graph: CanonicalGraph) -> None:
    missing = [(n.name, n.op) for n in graph.nodes if n.op not in OPS]
    if missing:
        raise UnsupportedOpError(missing, "canonical graph")


def _value_info(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _make_model(graph: CanonicalGraph, b: GraphBuilder, outputs: list[onnx.ValueInfoProto],
                extra_inputs: list[onnx.ValueInfoProto], name: str) -> InMemoryModel:
    feeds = graph.feeds or [(graph.input_name, graph.input_shape, TensorProto.FLOAT)]
    inputs = [helper.make_tensor_value_info(n, elem, [BATCH, *shape]) for n, shape, elem in feeds] + extra_inputs
    g = helper.make_graph(b.nodes, name, inputs, outputs)
    opset = output_opset(graph)
    ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    return InMemoryModel.from_arrays(g, b.arrays, opset, ir_version)


def _emit_forward(graph: CanonicalGraph, ctx: EmitContext) -> None:
    """The side nodes as the model has them (they compute the fixed tensors and a token model's embedding), then
    each canonical node's forward."""
    b = ctx.b
    b.reserve(graph.input_name)
    for name, _, _ in graph.feeds:
        b.reserve(name)
    for name, value in graph.side_consts.items():
        b.arrays[b.reserve(name)] = value
    for node in graph.side_nodes:
        for name in node.output:
            b.reserve(name)
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        b.nodes.append(copy)
    for node in graph.nodes:
        b.reserve(node.output)
    for node in graph.nodes:
        OPS[node.op].forward(ctx, node)


def build_forward_model(graph: CanonicalGraph) -> InMemoryModel:
    """The canonical graph's forward pass alone (input -> ``logits``): used for checks and perturbation scoring."""
    _check_ops(graph)
    b = GraphBuilder()
    ctx = EmitContext(b, graph)
    _emit_forward(graph, ctx)
    b.op("Identity", [graph.output_name], out_names=[LOGITS])
    return _make_model(graph, b, [_value_info(LOGITS, [BATCH, graph.num_classes])], [], "explainer_forward")


def build_relevance_model(graph: CanonicalGraph, composite: Composite, *, low=None, high=None,
                          seed_input: bool = False) -> InMemoryModel:
    """The relevance graph for ``composite`` (``low``/``high``: input bounds for the zB rule, in model input space;
    ``seed_input``: the seed is the graph's input ``seed``, not the composite's one-hot or logit of ``target``)."""
    _check_ops(graph)
    b = GraphBuilder()
    ctx = EmitContext(b, graph, with_relevance=True)
    per_sample = (1, *graph.input_shape)
    input_nonneg = False
    if low is not None and high is not None:
        lo = expand_bounds(low, per_sample, graph.layout)
        hi = expand_bounds(high, per_sample, graph.layout)
        ctx.bounds = propagate_bounds(graph, lo, hi)
        input_nonneg = bool(np.all(lo >= 0))
    elif composite.needs_bounds:
        raise InputError(f"method '{composite.name}' needs the input bounds low/high")
    ctx.nonneg = nonnegative(graph, input_nonneg)
    layers = layer_info(graph)
    _emit_forward(graph, ctx)
    b.op("Identity", [graph.output_name], out_names=[LOGITS])
    seed = _seed_from_input(b, graph) if seed_input else _seed_from_target(b, graph, composite)
    relevance: dict[str, list[str]] = {graph.output_name: [seed]}
    for node in reversed(graph.nodes):
        incoming = relevance.pop(node.output, None)
        if not incoming:
            continue
        r = b.sum(incoming, f"{node.name}_rout")
        layer = layers[node.output]
        rule = composite.rule_for(layer)
        results = OPS[node.op].backward(ctx, node, rule, r)
        for name, r_in in zip(node.inputs, results):
            if r_in is not None:
                relevance.setdefault(name, []).append(r_in)
    for name, label in graph.fixed.items():
        if relevance.get(name):
            ctx.absorb(label, b.sum(relevance[name], "fixed_relevance"))
    incoming = relevance.get(graph.input_name)
    if incoming:
        r = b.sum(incoming, "input_relevance")
    else:
        warnings.warn(f"method '{composite.name}': no relevance reaches the input '{graph.input_name}' from the "
                      f"output '{graph.output_name}'; the relevance is zero everywhere", stacklevel=2)
        r = b.mul(graph.input_name, b.const(0.0), "input_relevance")
    if composite.times_input:
        r = b.mul(r, graph.input_name, "times_input")
    b.op("Identity", [r], out_names=[RELEVANCE])
    outputs = [_value_info(LOGITS, [BATCH, graph.num_classes]), _value_info(RELEVANCE, [BATCH, *graph.input_shape])]
    for k, (name, shape, _) in enumerate(graph.also, start=1):
        incoming = relevance.get(name)
        r_k = b.sum(incoming, f"input_relevance_{k}") if incoming else b.mul(name, b.const(0.0), "no_relevance")
        if composite.times_input:
            r_k = b.mul(r_k, name, "times_input")
        b.op("Identity", [r_k], out_names=[f"{RELEVANCE}_{k}"])
        outputs.append(_value_info(f"{RELEVANCE}_{k}", [BATCH, *shape]))
    if not seed_input:
        outputs.append(helper.make_tensor_value_info(EXPLAINED, TensorProto.INT64, [BATCH]))
    if ctx.absorbed:
        totals = [b.op("ReduceSum", [b.op("Reshape", [b.sum(parts, "absorbed_parts"), b.ints([0, -1])]),
                                     b.ints([1])], "absorbed_total", keepdims=1) for parts in ctx.absorbed.values()]
        b.op("Concat", totals, out_names=[ABSORBED], axis=1)
        outputs.append(_value_info(ABSORBED, [BATCH, len(totals)]))
    extra = _value_info(SEED, [BATCH, graph.num_classes]) if seed_input \
        else helper.make_tensor_value_info(TARGET, TensorProto.INT64, [BATCH])
    model = _make_model(graph, b, outputs, [extra], f"explainer_{composite.name}")
    doc = {"method": composite.name, "description": composite.description,
           "absorbed": json.dumps(list(ctx.absorbed))}
    for key, value in doc.items():
        entry = model.skeleton.metadata_props.add()
        entry.key, entry.value = f"explainer.{key}", str(value)
    return model


def _seed_from_target(b: GraphBuilder, graph: CanonicalGraph, composite: Composite) -> str:
    """One-hot of the explained class (``target``, or the arg-max class where it is negative), times the logits
    for a logit seed; writes ``explained_target``."""
    b.reserve(TARGET)
    predicted = b.op("ArgMax", [graph.output_name], "predicted", axis=1, keepdims=0)
    explained = b.op("Where", [b.op("Less", [TARGET, b.const(0, dtype=np.int64)], "unset"), predicted, TARGET],
                     out_names=[EXPLAINED])
    onehot = b.op("OneHot", [explained, b.const([graph.num_classes], dtype=np.int64), b.const([0.0, 1.0])],
                  "onehot", axis=-1)
    return onehot if composite.seed == "one" else b.mul(onehot, graph.output_name, "seed")


def _seed_from_input(b: GraphBuilder, graph: CanonicalGraph) -> str:
    """The ``seed`` input, as given (a model tensor of that name is an InputError: it cannot take a seed array)."""
    if SEED in graph.shapes or graph.input_name == SEED:
        raise InputError(f"the model has a tensor named '{SEED}', which a seed array's relevance graph needs for its "
                         "own input; explain one class at a time (target) instead")
    b.reserve(SEED)
    return b.op("Identity", [SEED], "seed_given")


__all__ = ["ABSORBED", "EXPLAINED", "LOGITS", "MIN_OPSET", "RELEVANCE", "SEED", "TARGET", "build_forward_model",
           "build_relevance_model", "output_opset"]
