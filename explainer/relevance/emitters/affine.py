"""Element-wise affine layers y = x ⊙ s + t (unfolded BatchNorm, input normalisation): pass-through for LRP (as Zennit
treats BatchNorm), chain rule for the gradient, or a stabilised Norm/ε rule if a composite asks for one."""
from __future__ import annotations

from explainer.frontend.ir import CNode
from explainer.lrp.rules import LinearRule, Norm, Pass, Rule
from explainer.relevance.emitters.base import EmitContext, unsupported_rule


class AffineEmitter:
    kind = "affine"

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        b = ctx.b
        scaled = b.mul(node.inputs[0], ctx.weight(node, "scale", node.params["scale"]), f"{node.name}_scaled")
        b.op("Add", [scaled, ctx.weight(node, "shift", node.params["shift"])], out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x = node.inputs[0]
        out_shape = ctx.shape(node.output)
        if isinstance(rule, Pass):
            return [ctx.reduce_to(r, out_shape, ctx.shape(x), f"{node.name}_rin")]
        scale = ctx.weight(node, "scale", node.params["scale"])
        if rule.is_gradient:
            return [ctx.reduce_to(b.mul(r, scale), out_shape, ctx.shape(x), f"{node.name}_rin")]
        if isinstance(rule, (Norm, LinearRule)):
            g = b.div(r, b.stabilise(node.output, rule.stabiliser, f"{node.name}_den"))
            return [ctx.reduce_to(b.mul(b.mul(x, scale), g), out_shape, ctx.shape(x), f"{node.name}_rin")]
        raise unsupported_rule(node, rule)
