"""Ops that only move values around (Reshape, Transpose, Pad, Slice, Concat): relevance is routed back exactly,
whatever the rule (the transposed operation of a permutation/selection)."""
from __future__ import annotations

import numpy as np

from explainer.frontend.ir import CNode
from explainer.lrp.rules import Rule
from explainer.relevance.emitters.base import EmitContext


def _i64(ctx: EmitContext, values: list[int]) -> str:
    return ctx.b.const(values, dtype=np.int64)


class ReshapeEmitter:
    kind = None

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Reshape", [node.inputs[0], _i64(ctx, node.attrs["shape"])], out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        return [ctx.reshape_to(r, node.inputs[0], f"{node.name}_rin")]


class TransposeEmitter:
    kind = None

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Transpose", [node.inputs[0]], out_names=[node.output], perm=node.attrs["perm"])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        inverse = list(np.argsort(node.attrs["perm"]))
        return [ctx.b.op("Transpose", [r], f"{node.name}_rin", perm=[int(i) for i in inverse])]


class PadEmitter:
    kind = None

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Pad", [node.inputs[0], _i64(ctx, node.attrs["pads"]), ctx.b.const(node.attrs["value"])],
                 out_names=[node.output], mode="constant")

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        shape = ctx.shape(node.inputs[0])
        rank = len(shape)
        pads = node.attrs["pads"]
        axes = list(range(1, rank))
        starts = [pads[a] for a in axes]
        ends = [pads[a] + shape[a] for a in axes]
        return [ctx.b.op("Slice", [r, _i64(ctx, starts), _i64(ctx, ends), _i64(ctx, axes)], f"{node.name}_rin")]


class SliceEmitter:
    kind = None

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        axes = list(range(1, len(node.attrs["begin"])))
        ctx.b.op("Slice", [node.inputs[0], _i64(ctx, node.attrs["begin"][1:]), _i64(ctx, node.attrs["end"][1:]),
                           _i64(ctx, axes)], out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        shape = ctx.shape(node.inputs[0])
        begin, end = node.attrs["begin"], node.attrs["end"]
        pads = list(begin) + [s - e for s, e in zip(shape, end)]
        return [ctx.b.op("Pad", [r, _i64(ctx, pads)], f"{node.name}_rin", mode="constant")]


class ConcatEmitter:
    kind = None

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        b = ctx.b
        batch = None
        pieces = []
        for i, piece in enumerate(node.attrs["pieces"]):
            if isinstance(piece, int):
                pieces.append(node.inputs[piece])
                continue
            if batch is None:
                batch = b.op("Slice", [ctx.shape_of(node.inputs[0]), _i64(ctx, [0]), _i64(ctx, [1])], "batch")
            target = b.op("Concat", [batch, _i64(ctx, list(piece.shape[1:]))], "piece_shape", axis=0)
            pieces.append(b.op("Expand", [ctx.weight(node, f"piece{i}", piece), target], f"{node.name}_piece{i}"))
        b.op("Concat", pieces, out_names=[node.output], axis=node.attrs["axis"])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        sizes = node.attrs["sizes"]
        parts = ctx.b.op("Split", [r, _i64(ctx, sizes)], f"{node.name}_split", outputs=len(sizes),
                         axis=node.attrs["axis"])
        parts = parts if isinstance(parts, list) else [parts]
        return [part for part, piece in zip(parts, node.attrs["pieces"]) if isinstance(piece, int)]
