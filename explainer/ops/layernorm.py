"""LayerNorm: y = (x − μ) / σ ⊙ γ + β over the trailing axes from ``attrs['axis']`` (ONNX LayerNormalization, and the
decomposed forms ``frontend/patterns.py`` fuses into it). ``params``: ``scale`` γ and ``bias`` β of the normalised
shape.

LRP treats σ as a constant (AttnLRP's identity rule on the division, Achtibat et al. 2024, Prop. 3.4): the layer is
then the linear map x ↦ γ/σ ⊙ (x − μ) + β, and the ε/Norm rule gives R_x = x ⊙ (u − mean(u)) with
u = γ/σ ⊙ R / stab(y); β keeps its share. ``Pass`` sends the relevance through unchanged; the gradient is exact (σ
depends on x). The forward keeps 1/σ (LayerNormalization's third output) only when a relevance pass follows. zB
bounds stop here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import LinearRule, Norm, Pass, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule


def convert_layernorm(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if not ctx.is_data(x):
        raise NotSupported("the normalised input is constant")
    shape = ctx.shape(x)
    axis = int(attr(node, "axis", -1)) % len(shape)
    if axis == 0:
        raise NotSupported("normalisation over the batch axis")
    if any(name and ctx.is_data(name) for name in node.input[1:]):
        raise NotSupported("scale and bias must be constants")
    normalised = tuple(shape[axis:])
    scale = np.broadcast_to(np.asarray(ctx.value(node.input[1], "the scale"), np.float32), normalised)
    bias = ctx.optional(node, 2)
    bias = np.zeros(normalised, np.float32) if bias is None else \
        np.broadcast_to(np.asarray(bias, np.float32), normalised)
    return [cnode("LayerNorm", node, [x], axis=axis, epsilon=float(attr(node, "epsilon", 1e-5)),
                  params={"scale": np.ascontiguousarray(scale), "bias": np.ascontiguousarray(bias)})]


class LayerNorm(Op):
    name = "LayerNorm"
    kind = LayerKind.LAYERNORM

    def converters(self) -> Mapping[str, Converter]:
        return {"LayerNormalization": convert_layernorm}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        b = ctx.b
        inputs = [node.inputs[0], ctx.weight(node, "scale", node.params["scale"]),
                  ctx.weight(node, "bias", node.params["bias"])]
        attrs = {"axis": node.attrs["axis"], "epsilon": node.attrs["epsilon"]}
        if not ctx.with_relevance:
            b.op("LayerNormalization", inputs, out_names=[node.output], **attrs)
            return
        _, _, inv_std = b.op("LayerNormalization", inputs, outputs=3,
                             out_names=[node.output, f"{node.name}_mean", f"{node.name}_invstd"], **attrs)
        ctx.saved[(node.output, "invstd")] = inv_std

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        if isinstance(rule, Pass):
            return [r]
        b = ctx.b
        x = node.inputs[0]
        rank = len(ctx.shape(x))
        axes = list(range(node.attrs["axis"], rank))
        scale = ctx.weight(node, "scale", node.params["scale"])
        inv_std = ctx.saved[(node.output, "invstd")]

        def centred(t: str, hint: str) -> str:
            return b.sub(t, ctx.reduce("ReduceMean", t, axes, f"{hint}_mean"), hint)

        if rule.is_gradient:
            g = b.mul(r, scale, f"{node.name}_gscaled")
            x_hat = b.mul(centred(x, f"{node.name}_xc"), inv_std, f"{node.name}_xhat")
            proj = ctx.reduce("ReduceMean", b.mul(g, x_hat), axes, f"{node.name}_proj")
            inner = b.sub(centred(g, f"{node.name}_gc"), b.mul(x_hat, proj), f"{node.name}_ginner")
            return [b.mul(inner, inv_std, f"{node.name}_grad")]
        if isinstance(rule, (Norm, LinearRule)):
            s = b.div(r, b.stabilise(node.output, rule.stabiliser, f"{node.name}_den"), f"{node.name}_s")
            u = b.mul(b.mul(s, scale), inv_std, f"{node.name}_u")
            return [b.mul(x, centred(u, f"{node.name}_uc"), f"{node.name}_rin")]
        raise unsupported_rule(node, rule)

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return False

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
