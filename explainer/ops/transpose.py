"""Transpose (from a Transpose that keeps the batch axis first; the identity permutation is an alias): relevance
takes the inverse permutation whatever the rule; signs and zB bounds pass through (NHWC inputs start with one)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import Alias, ConvertContext, Converter, NotSupported, attr, cnode, single_data
from explainer.frontend.ir import CNode
from explainer.lrp.rules import Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext


def convert_transpose(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    x = single_data(ctx, node)
    rank = len(ctx.shape(x))
    perm = list(attr(node, "perm", list(reversed(range(rank)))))
    if perm[0] != 0:
        raise NotSupported(f"Transpose with perm {perm} moves the batch axis")
    if perm == list(range(rank)):
        return Alias(x)
    return [cnode("Transpose", node, [x], perm=perm)]


class Transpose(Op):
    name = "Transpose"
    kind = None

    def converters(self) -> Mapping[str, Converter]:
        return {"Transpose": convert_transpose}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Transpose", [node.inputs[0]], out_names=[node.output], perm=node.attrs["perm"])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        inverse = np.argsort(node.attrs["perm"])
        return [ctx.b.op("Transpose", [r], f"{node.name}_rin", perm=[int(i) for i in inverse])]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return low.transpose(node.attrs["perm"]), high.transpose(node.attrs["perm"])
