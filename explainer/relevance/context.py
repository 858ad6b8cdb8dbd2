"""What every op's emitter gets while one graph is written: the builder, the canonical graph, the analyses' results,
and small shared helpers (weights stored once, runtime shapes, reshapes and broadcast reductions)."""
from __future__ import annotations

import numpy as np

from explainer.errors import InputError
from explainer.frontend.ir import CanonicalGraph, CNode
from explainer.lrp.rules import Rule
from explainer.relevance.builder import GraphBuilder

#: the oldest opset the emitted graphs use (ScatterElements with reduction, Split sizes as an input, ...)
MIN_OPSET = 17


def output_opset(graph: CanonicalGraph) -> int:
    """The opset the forward and relevance graphs are emitted at: the model's own, at least ``MIN_OPSET`` (an
    opset-19 model may use attributes such as AveragePool's dilations that opset 17 does not know)."""
    return max(MIN_OPSET, graph.opset)


class EmitContext:
    """State shared by the ops' emitters while one forward or relevance graph is written.

    ``with_relevance`` says whether a relevance pass follows the forward one, so that forward ops keep what their
    backward needs (MaxPool's arg-max indices) only then; ``saved`` holds those tensors, keyed by (node output, what).
    ``nonneg`` and ``bounds`` are the sign and zB-bound analyses (``relevance/analysis.py``); ``absorbed`` collects
    the relevance constant inputs keep (``absorb``)."""

    def __init__(self, builder: GraphBuilder, graph: CanonicalGraph, *, with_relevance: bool = False) -> None:
        self.b = builder
        self.graph = graph
        self.opset = output_opset(graph)
        self.with_relevance = with_relevance
        self.saved: dict[tuple[str, str], str] = {}
        self.nonneg: set[str] = set()
        self.bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.absorbed: dict[str, list[str]] = {}
        self._weights: dict[tuple[str, str], str] = {}
        self._shape_nodes: dict[str, str] = {}

    def shape(self, name: str) -> tuple[int, ...]:
        """Per-sample shape of a data tensor, with the batch axis as 1."""
        return self.graph.shapes[name]

    def weight(self, node: CNode, key: str, value: np.ndarray) -> str:
        """An initializer for a (possibly modified) parameter, stored once per node and modification."""
        cache_key = (node.output, key)
        if cache_key not in self._weights:
            self._weights[cache_key] = self.b.const(np.ascontiguousarray(value, dtype=np.float32),
                                                    f"{node.name}_{key}".replace("/", "_"))
        return self._weights[cache_key]

    def absorb(self, label: str, relevance: str) -> None:
        """Record relevance that stays with a constant input of the network (a class token, a position embedding):
        the relevance graph reports its per-sample sum under ``label`` instead of dropping it silently."""
        self.absorbed.setdefault(label, []).append(relevance)

    def shape_of(self, name: str) -> str:
        """A runtime Shape node of ``name`` (one per tensor), for batch-agnostic reshapes."""
        if name not in self._shape_nodes:
            self._shape_nodes[name] = self.b.op("Shape", [name], f"{name}_shape")
        return self._shape_nodes[name]

    def reshape_to(self, t: str, like: str, hint: str = "reshape") -> str:
        """``t`` reshaped to ``like``'s static per-sample shape with a dynamic batch axis."""
        target = [-1] + list(self.shape(like)[1:])
        return self.b.op("Reshape", [t, self.b.const(target, dtype=np.int64)], hint)

    def reduce(self, op: str, t: str, axes: list[int], hint: str = "reduce") -> str:
        """``op`` (ReduceMean, ReduceSum, ReduceMax) of ``t`` over ``axes``, keeping them: axes are an input from
        opset 18 (13 for ReduceSum), an attribute before."""
        if op == "ReduceSum" or self.opset >= 18:
            return self.b.op(op, [t, self.b.ints(axes)], hint, keepdims=1)
        return self.b.op(op, [t], hint, axes=list(axes), keepdims=1)

    def reduce_to(self, t: str, t_shape: tuple[int, ...], target: tuple[int, ...], hint: str = "reduce") -> str:
        """Sum ``t`` (of per-sample shape ``t_shape``) over the axes along which ``target`` was broadcast."""
        if tuple(t_shape) == tuple(target):
            return t
        full = (1,) * (len(t_shape) - len(target)) + tuple(target)
        axes = [i for i, (a, b) in enumerate(zip(t_shape, full)) if b == 1 and a != 1 and i != 0]
        if axes:
            t = self.b.op("ReduceSum", [t, self.b.const(axes, dtype=np.int64)], hint, keepdims=1)
        if len(full) != len(target):
            t = self.b.op("Reshape", [t, self.b.const([-1] + list(target[1:]), dtype=np.int64)], hint)
        return t


def unsupported_rule(node: CNode, rule: Rule) -> InputError:
    """The error for a rule the user's method assigns to a layer it cannot apply to (a choice, not a model fault)."""
    return InputError(f"rule '{rule.describe()}' cannot be applied to {node.op} node '{node.name}'; choose another "
                      "rule for this layer kind")
