"""Local response normalisation (from LRN): pass-through for LRP (the usual convention, e.g. for Caffe's AlexNet),
exact derivative for the gradient: ∂L/∂x_k = g_k d_k^-β − (2αβ/n) x_k Σ_{i: k∈win(i)} g_i x_i d_i^(-β-1).
The output has the input's sign (d > 0), so it is never negative where the input is not; zB bounds stop here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, attr, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import Pass, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule


def convert_lrn(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    return [cnode("LRN", node, [node.input[0]], size=int(attr(node, "size")), alpha=float(attr(node, "alpha", 1e-4)),
                  beta=float(attr(node, "beta", 0.75)), bias=float(attr(node, "bias", 1.0)))]


def _channel_window_sum(ctx: EmitContext, node: CNode, t: str, before: int, after: int, hint: str) -> str:
    """Σ over channels c-before..c+after of t (zero outside), via a 3-D convolution over [N, 1, C, H, W]."""
    b = ctx.b
    size = before + after + 1
    rank = len(ctx.shape(node.inputs[0]))
    t5 = b.op("Unsqueeze", [t, b.const([1], dtype=np.int64)], hint)
    kernel = ctx.weight(node, f"window_{before}_{after}", np.ones((1, 1, size) + (1,) * (rank - 2), np.float32))
    pads = [before] + [0] * (rank - 2) + [after] + [0] * (rank - 2)
    summed = b.op("Conv", [t5, kernel], hint, pads=pads)
    return b.op("Squeeze", [summed, b.const([1], dtype=np.int64)], hint)


class LRN(Op):
    name = "LRN"
    kind = LayerKind.LRN

    def converters(self) -> Mapping[str, Converter]:
        return {"LRN": convert_lrn}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        a = node.attrs
        ctx.b.op("LRN", [node.inputs[0]], out_names=[node.output], size=a["size"], alpha=a["alpha"], beta=a["beta"],
                 bias=a["bias"])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        if isinstance(rule, Pass):
            return [r]
        if not rule.is_gradient:
            raise unsupported_rule(node, rule)
        b, a = ctx.b, node.attrs
        x = node.inputs[0]
        n, alpha, beta, bias = a["size"], a["alpha"], a["beta"], a["bias"]
        lo, hi = (n - 1) // 2, n - 1 - (n - 1) // 2
        sq = _channel_window_sum(ctx, node, b.mul(x, x), lo, hi, f"{node.name}_sqsum")
        d = b.add(b.mul(sq, b.const(alpha / n)), b.const(bias), f"{node.name}_d")
        d_pow = b.op("Pow", [d, b.const(-beta)], f"{node.name}_dpow")
        direct = b.mul(r, d_pow)
        inner = b.mul(b.mul(r, x), b.div(d_pow, d))
        spread = _channel_window_sum(ctx, node, inner, hi, lo, f"{node.name}_spread")
        cross = b.mul(b.mul(x, spread), b.const(2.0 * alpha * beta / n))
        return [b.sub(direct, cross, f"{node.name}_rin")]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
