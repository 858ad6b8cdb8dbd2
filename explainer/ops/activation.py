"""Element-wise activations (``attrs['kind']``: relu, leakyrelu, prelu, clip, sigmoid, tanh, softplus, softsign,
elu, selu, hardsigmoid, hardswish, swish, gelu, mish, erf, sqrt, exp, pow), from their ONNX ops, from the products
x·sigmoid(x) (swish) and x·hardsigmoid(x) (hard-swish), and from the decomposed forms ``frontend/patterns.py`` fuses
(GELU, Mish, hard-sigmoid, hard-swish). ``gelu`` has ``approximate`` ('none' or 'tanh'), ``pow`` a constant scalar
``exponent`` (the base is the data input).

LRP passes relevance through activations unchanged (the identity rule, AttnLRP's rule for element-wise
non-linearities); the gradient uses each activation's exact derivative, written with ONNX ops from the forward input x
and output y; DeconvNet and guided backprop rectify the signal. Gelu (opset 20) and Mish (opset 18) are written out
with Erf/Tanh/Softplus in graphs emitted at an older opset. The output is never negative for relu, sigmoid, softplus,
hardsigmoid, sqrt, exp, pow with an even integer exponent and clips with a lower bound >= 0, nor for gelu, mish, erf
and pow where the input is not; zB bounds stop here."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode, single_data
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import DeconvNet, GuidedBackprop, Pass, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule

_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus", "Elu": "elu",
                "LeakyRelu": "leakyrelu", "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Selu": "selu",
                "Softsign": "softsign", "Gelu": "gelu", "Mish": "mish", "Erf": "erf", "Sqrt": "sqrt", "Exp": "exp"}
_NONNEGATIVE = ("relu", "sigmoid", "softplus", "hardsigmoid", "sqrt", "exp")
#: activations emitted as the ONNX op of their capitalised name, without attributes
_UNARY = ("sigmoid", "tanh", "softplus", "softsign", "erf", "sqrt", "exp")
#: activations whose output is not negative where their input is not
_SIGN_KEEPING = ("gelu", "mish", "erf", "pow")
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_CUBIC = 0.044715


def convert_activation(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = single_data(ctx, node)
    kind = _ACTIVATIONS[node.op_type]
    attrs: dict[str, Any] = {"kind": kind}
    if kind == "leakyrelu":
        attrs["alpha"] = float(attr(node, "alpha", 0.01))
    elif kind == "elu":
        attrs["alpha"] = float(attr(node, "alpha", 1.0))
    elif kind == "selu":
        attrs["alpha"] = float(attr(node, "alpha", 1.67326319217681884765625))
        attrs["gamma"] = float(attr(node, "gamma", 1.05070102214813232421875))
    elif kind == "hardsigmoid":
        attrs["alpha"] = float(attr(node, "alpha", 0.2))
        attrs["beta"] = float(attr(node, "beta", 0.5))
    elif kind == "gelu":
        attrs["approximate"] = attr(node, "approximate", "none")
        if attrs["approximate"] not in ("none", "tanh"):
            raise NotSupported(f"Gelu with approximate='{attrs['approximate']}'")
    return [cnode("Activation", node, [x], **attrs)]


def convert_pow(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    """x ** p with data x and a constant scalar p."""
    x = node.input[0]
    if not ctx.is_data(x):
        raise NotSupported("the base is constant")
    exponent = ctx.value(node.input[1], "the exponent")
    if exponent.size != 1 or exponent.ndim > len(ctx.shape(x)):
        raise NotSupported(f"the exponent has shape {list(exponent.shape)}; only a scalar exponent is supported")
    return [cnode("Activation", node, [x], kind="pow", exponent=float(exponent.reshape(-1)[0]))]


def convert_prelu(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    slope = np.asarray(ctx.value(node.input[1], "the slope"), np.float32)
    return [cnode("Activation", node, [node.input[0]], kind="prelu", params={"slope": slope})]


def convert_clip(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if ctx.opset < 11:
        lo, hi = attr(node, "min", -3.4028234663852886e38), attr(node, "max", 3.4028234663852886e38)
    else:
        lo_v, hi_v = ctx.optional(node, 1), ctx.optional(node, 2)
        lo = -np.inf if lo_v is None else float(lo_v)
        hi = np.inf if hi_v is None else float(hi_v)
    return [cnode("Activation", node, [x], kind="clip", min=float(lo), max=float(hi))]


def convert_self_gated(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    """x·sigmoid(x) is swish; x·hardsigmoid(x) with PyTorch's α = 1/6, β = 0.5 is hard-swish."""
    a, b = node.input[0], node.input[1]
    if not (ctx.is_data(a) and ctx.is_data(b)):
        raise NotSupported("an operand is constant")
    for x, g in ((a, b), (b, a)):
        prod = ctx.producers.get(g)
        if prod is not None and prod.op_type in ("Sigmoid", "HardSigmoid") and prod.input[0] == x:
            if prod.op_type == "Sigmoid":
                return [cnode("Activation", node, [x], kind="swish")]
            alpha, beta = float(attr(prod, "alpha", 0.2)), float(attr(prod, "beta", 0.5))
            if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6:
                return [cnode("Activation", node, [x], kind="hardswish")]
    raise NotSupported("not swish x·sigmoid(x) or hard-swish x·hardsigmoid(x)")


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
    elif kind in _UNARY or (kind == "mish" and ctx.opset >= 18):
        b.op(kind.capitalize(), [x], out_names=out)
    elif kind == "mish":
        b.op("Mul", [x, b.op("Tanh", [b.op("Softplus", [x])])], out_names=out)
    elif kind == "gelu" and ctx.opset >= 20:
        b.op("Gelu", [x], out_names=out, approximate=a["approximate"])
    elif kind == "gelu":
        b.op("Mul", [b.mul(x, b.const(0.5)), b.add(b.const(1.0), _gelu_inner(ctx, node))], out_names=out)
    elif kind == "pow":
        b.op("Pow", [x, b.const(a["exponent"])], out_names=out)
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


def _gelu_inner(ctx: EmitContext, node: CNode) -> str:
    """erf(x/√2), or tanh(√(2/π)·(x + 0.044715·x³)) for the tanh approximation."""
    b, x = ctx.b, node.inputs[0]
    if node.attrs["approximate"] == "none":
        return b.op("Erf", [b.mul(x, b.const(1 / math.sqrt(2)))])
    cubic = b.mul(b.mul(x, b.mul(x, x)), b.const(_GELU_CUBIC))
    return b.op("Tanh", [b.mul(b.add(x, cubic), b.const(_SQRT_2_OVER_PI))])


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
    if kind == "gelu" and a["approximate"] == "none":
        # Φ(x) + x·φ(x)
        cdf = b.mul(b.add(one, _gelu_inner(ctx, node)), b.const(0.5))
        pdf = b.mul(b.op("Exp", [b.mul(b.mul(x, x), b.const(-0.5))]), b.const(1 / math.sqrt(2 * math.pi)))
        return b.add(cdf, b.mul(x, pdf), "dgelu")
    if kind == "gelu":
        # with t = tanh(u), u = √(2/π)·(x + 0.044715·x³): ½(1 + t) + ½x·(1 − t²)·u'
        t = _gelu_inner(ctx, node)
        du = b.mul(b.add(one, b.mul(b.mul(x, x), b.const(3 * _GELU_CUBIC))), b.const(_SQRT_2_OVER_PI))
        return b.add(b.mul(b.add(one, t), b.const(0.5)),
                     b.mul(b.mul(b.mul(x, b.const(0.5)), b.sub(one, b.mul(t, t))), du), "dgelu")
    if kind == "mish":
        # with t = tanh(softplus(x)): t + x·(1 − t²)·sigmoid(x)
        t = b.op("Tanh", [b.op("Softplus", [x])])
        return b.add(t, b.mul(b.mul(x, b.sub(one, b.mul(t, t))), b.op("Sigmoid", [x])), "dmish")
    if kind == "erf":
        return b.mul(b.op("Exp", [b.op("Neg", [b.mul(x, x)])]), b.const(2 / math.sqrt(math.pi)), "derf")
    if kind == "sqrt":
        return b.div(b.const(0.5), y, "dsqrt")
    if kind == "exp":
        return y
    if kind == "pow":
        p = a["exponent"]
        if p == 0:
            return b.mul(x, zero, "dpow")
        return b.mul(b.op("Pow", [x, b.const(p - 1)]), b.const(p), "dpow")
    raise ValueError(f"no derivative for activation kind '{kind}'")


class Activation(Op):
    name = "Activation"
    kind = LayerKind.ACTIVATION

    def converters(self) -> Mapping[str, Converter]:
        return {**{op: convert_activation for op in _ACTIVATIONS}, "PRelu": convert_prelu, "Clip": convert_clip,
                "Pow": convert_pow, "Mul": convert_self_gated}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        _forward(ctx, node)

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
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

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        kind, a = node.attrs["kind"], node.attrs
        even_power = kind == "pow" and a["exponent"] % 2 == 0
        return kind in _NONNEGATIVE or (kind == "clip" and a["min"] >= 0) or even_power \
            or (kind in _SIGN_KEEPING and inputs_nonnegative[0])

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None

    def activation_name(self, node: CNode) -> str | None:
        kind = node.attrs["kind"]
        return "relu6" if kind == "clip" and node.attrs["min"] == 0.0 else kind
