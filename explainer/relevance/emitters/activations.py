"""Element-wise activations: forward op, and backward by rule (pass-through, gradient, DeconvNet, guided backprop).

LRP passes relevance through activations unchanged; the gradient uses each activation's exact derivative, written
with ONNX ops from the forward input x and output y.
"""
from __future__ import annotations

from explainer.frontend.ir import CNode
from explainer.lrp.rules import DeconvNet, GuidedBackprop, Pass, Rule
from explainer.relevance.emitters.base import EmitContext, unsupported_rule


def _forward(ctx: EmitContext, node: CNode) -> None:
    b, a = ctx.b, node.attrs
    x, out, kind = node.inputs[0], [node.output], a["kind"]
    if kind == "relu":
        b.op("Relu", [x], out_names=out)
    elif kind == "leakyrelu":
        b.op("LeakyRelu", [x], out_names=out, alpha=a["alpha"])
    elif kind == "prelu":
        b.op("PRelu", [x, ctx.weight(node, "slope", node.params["slope"])], out_names=out)
    elif kind == "clip":
        b.op("Clip", [x, b.const(max(a["min"], -3.4e38)), b.const(min(a["max"], 3.4e38))], out_names=out)
    elif kind in ("sigmoid", "tanh", "softplus", "softsign"):
        b.op(kind.capitalize(), [x], out_names=out)
    elif kind == "elu":
        b.op("Elu", [x], out_names=out, alpha=a["alpha"])
    elif kind == "selu":
        b.op("Selu", [x], out_names=out, alpha=a["alpha"], gamma=a["gamma"])
    elif kind == "hardsigmoid":
        b.op("HardSigmoid", [x], out_names=out, alpha=a["alpha"], beta=a["beta"])
    elif kind == "hardswish":
        b.op("HardSwish", [x], out_names=out)
    elif kind == "swish":
        b.op("Mul", [x, b.op("Sigmoid", [x], f"{node.name}_sig")], out_names=out)
    else:
        raise ValueError(f"unknown activation kind '{kind}'")


def derivative(ctx: EmitContext, node: CNode) -> str:
    """f'(x) for the node's activation, as a tensor of x's shape."""
    b, a = ctx.b, node.attrs
    x, y, kind = node.inputs[0], node.output, a["kind"]
    zero, one = b.const(0.0), b.const(1.0)

    def where_pos(neg_value: str) -> str:
        return b.op("Where", [b.op("Greater", [x, zero]), one, neg_value], "dact")

    if kind == "relu":
        return b.cast_float(b.op("Greater", [x, zero]), "drelu")
    if kind == "leakyrelu":
        return where_pos(b.const(a["alpha"]))
    if kind == "prelu":
        slope = b.op("Expand", [ctx.weight(node, "slope", node.params["slope"]), ctx.shape_of(x)], "slope")
        return where_pos(slope)
    if kind == "clip":
        inside = b.op("And", [b.op("Greater", [x, b.const(max(a["min"], -3.4e38))]),
                              b.op("Less", [x, b.const(min(a["max"], 3.4e38))])])
        return b.cast_float(inside, "dclip")
    if kind == "sigmoid":
        return b.mul(y, b.sub(one, y))
    if kind == "tanh":
        return b.sub(one, b.mul(y, y))
    if kind == "softplus":
        return b.op("Sigmoid", [x])
    if kind == "softsign":
        d = b.add(one, b.op("Abs", [x]))
        return b.div(one, b.mul(d, d))
    if kind == "elu":
        return where_pos(b.add(y, b.const(a["alpha"])))
    if kind == "selu":
        return b.op("Where", [b.op("Greater", [x, zero]), b.const(a["gamma"]),
                              b.add(y, b.const(a["gamma"] * a["alpha"]))])
    if kind == "hardsigmoid":
        lin = b.add(b.mul(x, b.const(a["alpha"])), b.const(a["beta"]))
        inside = b.op("And", [b.op("Greater", [lin, zero]), b.op("Less", [lin, one])])
        return b.mul(b.cast_float(inside), b.const(a["alpha"]))
    if kind == "hardswish":
        mid = b.div(b.add(b.mul(x, b.const(2.0)), b.const(3.0)), b.const(6.0))
        upper = b.op("Where", [b.op("Greater", [x, b.const(3.0)]), one, mid])
        return b.op("Where", [b.op("Less", [x, b.const(-3.0)]), zero, upper], "dhswish")
    if kind == "swish":
        s = b.op("Sigmoid", [x])
        return b.add(s, b.mul(b.mul(x, s), b.sub(one, s)), "dswish")
    raise ValueError(f"no derivative for activation kind '{kind}'")


class ActivationEmitter:
    kind = "activation"

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        _forward(ctx, node)

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x = node.inputs[0]
        if isinstance(rule, Pass):
            return [r]
        if isinstance(rule, DeconvNet):
            return [b.relu(r, f"{node.name}_deconv")]
        if isinstance(rule, GuidedBackprop):
            grad = b.mul(r, derivative(ctx, node), f"{node.name}_grad")
            return [b.relu(grad, f"{node.name}_guided")] if node.attrs["kind"] == "relu" else [
                b.mul(grad, b.cast_float(b.op("Greater", [r, b.const(0.0)])), f"{node.name}_guided")]
        if rule.is_gradient:
            return [b.mul(r, derivative(ctx, node), f"{node.name}_grad")]
        raise unsupported_rule(node, rule)


def is_nonnegative(node: CNode) -> bool:
    """Whether the activation's output is never negative (lets linear rules skip negative-input terms)."""
    kind = node.attrs["kind"]
    return kind in ("relu", "sigmoid", "softplus", "hardsigmoid") or (kind == "clip" and node.attrs["min"] >= 0)


__all__ = ["ActivationEmitter", "derivative", "is_nonnegative"]
