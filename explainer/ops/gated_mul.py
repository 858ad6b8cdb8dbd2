"""Mul: a gated product x ⊙ g whose gate g is a sigmoid or hard-sigmoid of data (squeeze-excitation), from a Mul of
two data tensors that is not swish (``activation.py`` claims x·sigmoid(x) first). ``Pass`` (Zennit's treatment)
sends all relevance to x, holding the gate fixed; AttnLRP's ``Uniform`` splits it between x and the gate as for any
product of two activations (``product.py``); the gradient flows to both. The gate is never negative, so the output is
never negative where x is not; zB bounds stop here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import Pass, Rule
from explainer.ops.product import Product
from explainer.relevance.context import EmitContext


def convert_gated_mul(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    a, b = node.input[0], node.input[1]
    if not (ctx.is_data(a) and ctx.is_data(b)):
        raise NotSupported("an operand is constant")
    for x, g in ((a, b), (b, a)):
        prod = ctx.producers.get(g)
        if prod is not None and prod.op_type in ("Sigmoid", "HardSigmoid"):
            return [cnode("Mul", node, [x, g], gate=1)]
    raise NotSupported("neither factor is a sigmoid or hard-sigmoid gate")


class GatedMul(Product):
    name = "Mul"
    kind = LayerKind.MUL

    def converters(self) -> Mapping[str, Converter]:
        return {"Mul": convert_gated_mul}

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        if isinstance(rule, Pass):
            x = node.inputs[0]
            return [ctx.reduce_to(r, ctx.shape(node.output), ctx.shape(x), f"{node.name}_rin"), None]
        return super().backward(ctx, node, rule, r)

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return inputs_nonnegative[0]
