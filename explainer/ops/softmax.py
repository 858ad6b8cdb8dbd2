"""Softmax inside the network (attention weights) over the last axis, from ONNX Softmax that is not on the output
chain (a final softmax is removed instead, ``aliases.py``).

Rules: ``SoftmaxTaylor`` (AttnLRP): R_x = x ⊙ (R_y − y ⊙ Σ R_y), with −∞ inputs (masked positions) read as 0, as LXT
does; ``Stop`` (CP-LRP): no relevance to the scores; the gradient: y ⊙ (g − Σ y ⊙ g). The output is never negative;
zB bounds stop here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode, single_data
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import Rule, SoftmaxTaylor, Stop
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule


def convert_softmax(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    if node.output[0] in ctx.output_chain:
        raise NotSupported("a final softmax is removed, not explained")
    x = single_data(ctx, node)
    rank = len(ctx.shape(x))
    axis = int(attr(node, "axis", -1 if ctx.opset >= 13 else 1)) % rank
    if axis != rank - 1:
        raise NotSupported(f"softmax over axis {axis} of a rank-{rank} tensor; only the last axis is supported")
    return [cnode("Softmax", node, [x])]


class Softmax(Op):
    name = "Softmax"
    kind = LayerKind.SOFTMAX

    def converters(self) -> Mapping[str, Converter]:
        return {"Softmax": convert_softmax}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Softmax", node.inputs, out_names=[node.output], axis=-1)

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x, y = node.inputs[0], node.output
        if isinstance(rule, Stop):
            return [None]
        if rule.is_gradient:
            inner = ctx.reduce("ReduceSum", b.mul(y, r), [-1], f"{node.name}_yg")
            return [b.mul(y, b.sub(r, inner), f"{node.name}_grad")]
        if isinstance(rule, SoftmaxTaylor):
            total = ctx.reduce("ReduceSum", r, [-1], f"{node.name}_rsum")
            masked = b.op("IsInf", [x], f"{node.name}_masked", detect_positive=0)
            x_finite = b.op("Where", [masked, b.const(0.0), x], f"{node.name}_xfinite")
            return [b.mul(x_finite, b.sub(r, b.mul(y, total)), f"{node.name}_rin")]
        raise unsupported_rule(node, rule)

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return True

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
