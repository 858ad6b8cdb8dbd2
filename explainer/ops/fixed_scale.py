"""FixedScale: y = x ⊙ s or x ⊘ s where s is computed from fixed inputs alone (an attention mask multiplying the
embeddings before a masked mean, its token count dividing them), from a Mul or Div of data and such a tensor. The
scale is the model's input, not a weight, so it can only be emitted as the tensor the side nodes compute: an
element-wise scale whose relevance passes through (LRP: ``Pass``, or the stabilised ε form of a diagonal linear map
without bias, which is the same up to ε), chain rule for the gradient. The scale takes no relevance."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import LinearRule, Norm, Pass, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule


def convert_fixed_scale(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    a, b = node.input[0], node.input[1]
    if node.op_type == "Div":
        if a in ctx.fixed or b not in ctx.fixed:
            raise NotSupported("not data divided by a tensor computed from fixed inputs")
        x, s = a, b
    elif a in ctx.fixed and b in ctx.data and b not in ctx.fixed:
        x, s = b, a
    elif b in ctx.fixed and a in ctx.data and a not in ctx.fixed:
        x, s = a, b
    else:
        raise NotSupported("no operand is a tensor computed from fixed inputs")
    try:
        out = np.broadcast_shapes(ctx.shape(x), ctx.shape(s))
    except ValueError:
        out = None
    if out != tuple(ctx.shape(x)):
        raise NotSupported(f"the fixed factor of shape {list(ctx.shape(s))} does not broadcast to the data's "
                           f"{list(ctx.shape(x))}")
    return [cnode("FixedScale", node, [x, s], divide=int(node.op_type == "Div"))]


class FixedScale(Op):
    name = "FixedScale"
    kind = LayerKind.AFFINE

    def converters(self) -> Mapping[str, Converter]:
        return {"Mul": convert_fixed_scale, "Div": convert_fixed_scale}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Div" if node.attrs.get("divide") else "Mul", node.inputs, out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x, s = node.inputs
        out_shape, x_shape = ctx.shape(node.output), ctx.shape(x)
        if isinstance(rule, Pass):
            return [ctx.reduce_to(r, out_shape, x_shape, f"{node.name}_rin"), None]
        if rule.is_gradient:
            scaled = b.div(r, s) if node.attrs.get("divide") else b.mul(r, s)
            return [ctx.reduce_to(scaled, out_shape, x_shape, f"{node.name}_rin"), None]
        if isinstance(rule, (Norm, LinearRule)):
            g = b.div(r, b.stabilise(node.output, rule.stabiliser, f"{node.name}_den"))
            return [ctx.reduce_to(b.mul(node.output, g), out_shape, x_shape, f"{node.name}_rin"), None]
        raise unsupported_rule(node, rule)

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return False

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
