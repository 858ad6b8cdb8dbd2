"""Reshape (from Flatten, Reshape, Squeeze and Unsqueeze that keep the batch axis; one that changes nothing is an
alias): a static per-sample shape with the batch axis as -1. Relevance is reshaped back whatever the rule; signs and
zB bounds pass through."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import Alias, ConvertContext, Converter, NotSupported, cnode, single_data
from explainer.frontend.ir import CNode
from explainer.lrp.rules import Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext


def convert_batch_preserving_reshape(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    x = single_data(ctx, node)
    out_shape = ctx.shape(node.output[0])
    in_shape = ctx.shape(x)
    if out_shape[0] != in_shape[0]:
        raise NotSupported(f"reshape from {list(in_shape)} to {list(out_shape)} moves the batch axis")
    if out_shape == in_shape:
        return Alias(x)
    return [cnode("Reshape", node, [x], shape=[-1] + list(out_shape[1:]))]


class Reshape(Op):
    name = "Reshape"
    kind = None

    def converters(self) -> Mapping[str, Converter]:
        return dict.fromkeys(("Flatten", "Reshape", "Squeeze", "Unsqueeze"), convert_batch_preserving_reshape)

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Reshape", [node.inputs[0], ctx.b.ints(node.attrs["shape"])], out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        return [ctx.reshape_to(r, node.inputs[0], f"{node.name}_rin")]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        target = [1] + node.attrs["shape"][1:]
        return low.reshape(target), high.reshape(target)
