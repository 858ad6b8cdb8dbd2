"""Analyses of a canonical graph that the relevance graph needs, each asking every node's op (``explainer.ops``):
which tensors are never negative (linear rules then skip negative-input terms), which layer each node is to the
composites (kind, first linear layer, activation), and the zB input bounds carried from the model input."""
from __future__ import annotations

import numpy as np

from explainer.frontend.ir import CanonicalGraph
from explainer.lrp.composites import LINEAR_KINDS, Layer, LayerKind
from explainer.ops import OPS
from explainer.ops.base import Bounds


def nonnegative(graph: CanonicalGraph, input_nonnegative: bool) -> set[str]:
    """The tensors that are never negative, given whether the model input is."""
    nonneg = {graph.input_name} if input_nonnegative else set()
    for node in graph.nodes:
        if OPS[node.op].output_nonnegative(node, [i in nonneg for i in node.inputs]):
            nonneg.add(node.output)
    return nonneg


def layer_info(graph: CanonicalGraph) -> dict[str, Layer]:
    """The Layer record (kind, first-ness, activation) of every node, keyed by its output tensor."""
    linear_upstream: dict[str, bool] = {graph.input_name: False}
    layers: dict[str, Layer] = {}
    for node in graph.nodes:
        op = OPS[node.op]
        upstream = any(linear_upstream.get(i, False) for i in node.inputs)
        layers[node.output] = Layer(kind=op.kind or LayerKind.STRUCTURAL, name=node.name, op=node.op,
                                    first=op.kind in LINEAR_KINDS and not upstream,
                                    activation=op.activation_name(node))
        linear_upstream[node.output] = upstream or op.kind in LINEAR_KINDS
    return layers


def propagate_bounds(graph: CanonicalGraph, low: np.ndarray, high: np.ndarray) -> dict[str, Bounds]:
    """Carry [low, high] from the model input along first inputs, as far as each op lets bounds through (shape and
    affine ops), to the tensors that feed linear layers."""
    bounds = {graph.input_name: (low, high)}
    for node in graph.nodes:
        if node.inputs and node.inputs[0] in bounds:
            carried = OPS[node.op].propagate_bounds(node, *bounds[node.inputs[0]])
            if carried is not None:
                bounds[node.output] = carried
    return {k: (np.ascontiguousarray(lo, np.float32), np.ascontiguousarray(hi, np.float32))
            for k, (lo, hi) in bounds.items()}
