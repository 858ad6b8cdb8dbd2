"""What every per-op emitter gets: the builder, the canonical graph, shapes, and small shared helpers."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from explainer.errors import ModelError
from explainer.frontend.ir import CanonicalGraph, CNode
from explainer.lrp.rules import Rule
from explainer.relevance.builder import GraphBuilder


class EmitContext:
    """State shared by the emitters while one relevance graph is written."""

    def __init__(self, builder: GraphBuilder, graph: CanonicalGraph) -> None:
        self.b = builder
        self.graph = graph
        self.nonneg: set[str] = set()
        self.bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
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

    def shape_of(self, name: str) -> str:
        """A runtime Shape node of ``name`` (one per tensor), for batch-agnostic reshapes."""
        if name not in self._shape_nodes:
            self._shape_nodes[name] = self.b.op("Shape", [name], f"{name}_shape")
        return self._shape_nodes[name]

    def reshape_to(self, t: str, like: str, hint: str = "reshape") -> str:
        """``t`` reshaped to ``like``'s static per-sample shape with a dynamic batch axis."""
        target = [-1] + list(self.shape(like)[1:])
        return self.b.op("Reshape", [t, self.b.const(target, dtype=np.int64)], hint)

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


class OpEmitter(Protocol):
    """Turns one canonical op into forward nodes and, given a rule, into relevance (backward) nodes."""

    #: the layer kind composites match on, or None for structural ops that only route relevance
    kind: str | None

    def forward(self, ctx: EmitContext, node: CNode) -> None: ...

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]: ...


def unsupported_rule(node: CNode, rule: Rule) -> ModelError:
    return ModelError(f"rule '{rule.describe()}' cannot be applied to {node.op} node '{node.name}'")
