"""Concat (from a Concat off the batch axis of data tensors and constant pieces; ``pieces`` holds an input index or a
constant array per piece; a single data piece is an alias): relevance is split back to the data pieces whatever the
rule; constant pieces (a ViT's class token) keep theirs, which the relevance graph reports (``EmitContext.absorb``).
The output is never negative where every piece is not; zB bounds stop here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from explainer.frontend.convert import Alias, ConvertContext, Converter, NotSupported, attr, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.rules import Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext


def convert_concat(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    rank = len(ctx.shape(node.output[0]))
    axis = int(attr(node, "axis")) % rank
    if axis == 0:
        raise NotSupported("concatenation along the batch axis")
    pieces: list[Any] = []
    data: list[str] = []
    for name in node.input:
        if ctx.is_data(name):
            pieces.append(len(data))
            data.append(name)
        else:
            value = ctx.value(name, "a non-data piece").astype(np.float32)
            if value.ndim != rank or value.shape[0] != 1:
                raise NotSupported("a constant piece without a batch axis of 1")
            pieces.append(value)
    if len(pieces) == 1:
        return Alias(data[0])
    return [cnode("Concat", node, data, axis=axis, pieces=pieces,
                  sizes=[ctx.shape(data[p])[axis] if isinstance(p, int) else p.shape[axis] for p in pieces])]


class Concat(Op):
    name = "Concat"
    kind = None

    def converters(self) -> Mapping[str, Converter]:
        return {"Concat": convert_concat}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        b = ctx.b
        batch = None
        pieces = []
        for i, piece in enumerate(node.attrs["pieces"]):
            if isinstance(piece, int):
                pieces.append(node.inputs[piece])
                continue
            if batch is None:
                batch = b.op("Slice", [ctx.shape_of(node.inputs[0]), b.ints([0]), b.ints([1])], "batch")
            target = b.op("Concat", [batch, b.ints(piece.shape[1:])], "piece_shape", axis=0)
            pieces.append(b.op("Expand", [ctx.weight(node, f"piece{i}", piece), target], f"{node.name}_piece{i}"))
        b.op("Concat", pieces, out_names=[node.output], axis=node.attrs["axis"])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        sizes = node.attrs["sizes"]
        parts = ctx.b.op("Split", [r, ctx.b.ints(sizes)], f"{node.name}_split", outputs=len(sizes),
                         axis=node.attrs["axis"])
        parts = parts if isinstance(parts, list) else [parts]
        for part, piece in zip(parts, node.attrs["pieces"]):
            if not isinstance(piece, int):
                ctx.absorb(f"constant token(s) of Concat '{node.name}'", part)
        return [part for part, piece in zip(parts, node.attrs["pieces"]) if isinstance(piece, int)]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        constants = [p for p in node.attrs["pieces"] if not isinstance(p, int)]
        return all(inputs_nonnegative) and all(np.all(p >= 0) for p in constants)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
