"""Ops that join data tensors: residual Add/Sum (relevance split in proportion to each branch's contribution, the
Norm rule) and gated products x ⊙ g (squeeze-excitation; LRP sends all relevance to x, treating the gate as fixed)."""
from __future__ import annotations

from explainer.frontend.ir import CNode
from explainer.lrp.rules import LinearRule, Norm, Pass, Rule
from explainer.relevance.emitters.base import EmitContext, unsupported_rule


class AddEmitter:
    kind = "add"

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


class GatedMulEmitter:
    kind = "mul"

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
