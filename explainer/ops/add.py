"""Add: the sum of several data tensors (residual branches), from an Add of two data tensors and from Sum (a Sum of
one tensor is an alias). Relevance is split in proportion to each branch's contribution (the Norm rule, or a
LinearRule's stabiliser), or copied to every branch for the gradient. The output is never negative where no input
is; zB bounds stop here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import Alias, ConvertContext, Converter, NotSupported, cnode, data_inputs
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import LinearRule, Norm, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule


def convert_add(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    data = data_inputs(ctx, node)
    if len(data) != len([i for i in node.input if i]):
        raise NotSupported(f"{node.op_type} with constant operands")
    if len(data) == 1:
        return Alias(data[0])
    return [cnode("Add", node, data)]


class Add(Op):
    name = "Add"
    kind = LayerKind.ADD

    def converters(self) -> Mapping[str, Converter]:
        return {"Add": convert_add, "Sum": convert_add}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Sum" if len(node.inputs) > 2 else "Add", node.inputs, out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        out_shape = ctx.shape(node.output)
        if rule.is_gradient:
            return [ctx.reduce_to(r, out_shape, ctx.shape(x), f"{node.name}_rin") for x in node.inputs]
        if isinstance(rule, (Norm, LinearRule)):
            g = b.div(r, b.stabilise(node.output, rule.stabiliser, f"{node.name}_den"), f"{node.name}_s")
            return [ctx.reduce_to(b.mul(x, g, f"{node.name}_share"), out_shape, ctx.shape(x), f"{node.name}_rin")
                    for x in node.inputs]
        raise unsupported_rule(node, rule)

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
