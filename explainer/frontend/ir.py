"""The canonical graph: a small, explicit IR that the front end produces and the relevance back end walks.

Every node has one canonical op type (a key of ``explainer.ops.OPS``; each op's module says what its converters put
in ``attrs`` and ``params``), data inputs by tensor name, and its constant parameters as NumPy arrays, so that the
back end never needs to look at how the original exporter spelled things.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CNode:
    """One canonical node: ``op`` with data ``inputs`` (tensor names) and constant ``params``."""

    op: str
    inputs: list[str]
    output: str
    name: str
    source_op: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class CanonicalGraph:
    """A canonical, single-output graph with static per-sample shapes, explaining one input tensor.

    ``shapes`` maps every data tensor to its full shape at batch size 1 (the batch axis is always axis 0).
    ``opset`` is the model's default-domain opset (the relevance graph is emitted at ``max(17, opset)``).
    ``reference`` holds inputs (name -> array, one sample) and the original model's pre-softmax scores for them, to
    verify rewritten graphs.
    """

    input_name: str
    input_shape: tuple[int, ...]
    layout: str
    output_name: str
    nodes: list[CNode]
    shapes: dict[str, tuple[int, ...]]
    opset: int = 17
    changes: list[str] = field(default_factory=list)
    source_ops: dict[str, int] = field(default_factory=dict)
    folded_ops: dict[str, int] = field(default_factory=dict)
    removed_ops: dict[str, int] = field(default_factory=dict)
    reference: tuple[dict[str, np.ndarray], np.ndarray] | None = None
    output_shape: tuple[int, ...] = ()
    """the explained output's per-sample shape before flattening ([classes] for a score vector, [K, H, W] for
    segmentation logits); ``()`` when unknown"""
    feeds: list[tuple[str, tuple[int, ...], int]] = field(default_factory=list)
    """the model inputs the emitted graphs take (name, per-sample shape, ONNX element type), the explained one (or
    the token ids) first; empty: ``input_name`` alone, float"""
    token_input: str | None = None
    """the token ids whose embedding lookup (a side node) computes ``input_name``"""
    side_nodes: list[Any] = field(default_factory=list)
    """ONNX nodes computed from fixed inputs (and the token ids) alone, emitted as they are before the canonical
    nodes: an attention mask's arithmetic, the embedding lookup"""
    side_consts: dict[str, np.ndarray] = field(default_factory=dict)
    """the constants the side nodes read"""
    also: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)
    """further inputs that receive relevance (name, per-sample shape, layout): the graphs' ``relevance_<k>``"""
    fixed: dict[str, str] = field(default_factory=dict)
    """side tensors that canonical nodes read -> a label naming the fixed inputs they come from; relevance arriving
    there is kept and reported like a constant's"""

    @property
    def num_classes(self) -> int:
        return int(self.shapes[self.output_name][-1])

    def consumers(self) -> dict[str, list[CNode]]:
        """Map tensor name -> nodes that read it (in graph order)."""
        out: dict[str, list[CNode]] = {}
        for node in self.nodes:
            for name in node.inputs:
                out.setdefault(name, []).append(node)
        return out

    def producer(self) -> dict[str, CNode]:
        return {node.output: node for node in self.nodes}
