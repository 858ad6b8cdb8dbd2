"""Mul: a gated product x ⊙ g whose gate g is a sigmoid or hard-sigmoid of data (squeeze-excitation), from a Mul of
two data tensors that is not swish (``activation.py`` claims x·sigmoid(x) first). LRP sends all relevance to x,
treating the gate as fixed; the gradient flows to both. The gate is never negative, so the output is never negative
where x is not; zB bounds stop here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import Pass, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule


def convert_gated_mul(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    a, b = node.input[0], node.input[1]
    if not (ctx.is_data(a) and ctx.is_data(b)):
        raise NotSupported("an operand is constant")
    for x, g in ((a, b), (b, a)):
        prod = ctx.producers.get(g)
        if prod is not None and prod.op_type in ("Sigmoid", "HardSigmoid"):
            return [cnode("Mul", node, [x, g], gate=1)]
    raise NotSupported("neither factor is a sigmoid or hard-sigmoid gate")


class GatedMul(Op):
    name = "Mul"
    kind = LayerKind.MUL

    def converters(self) -> Mapping[str, Converter]:
        return {"Mul": convert_gated_mul}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Mul", node.inputs, out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        x, gate = node.inputs
        out_shape = ctx.shape(node.output)
        if isinstance(rule, Pass):
            return [ctx.reduce_to(r, out_shape, ctx.shape(x), f"{node.name}_rin"), None]
        if rule.is_gradient:
            b = ctx.b
            return [ctx.reduce_to(b.mul(r, gate), out_shape, ctx.shape(x), f"{node.name}_gx"),
                    ctx.reduce_to(b.mul(r, x), out_shape, ctx.shape(gate), f"{node.name}_gg")]
        raise unsupported_rule(node, rule)

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return inputs_nonnegative[0]

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
