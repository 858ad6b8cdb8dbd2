"""Conv and Dense (Gemm/MatMul) forward and backward, and the generic application of a LinearRule to them.

Every LRP rule here is "forward with modified parameters, divide, one transposed product, multiply": the transposed
product of a Conv is a ConvTranspose with the same weights, strides, pads, dilations and group (output_padding makes
the shape match the layer's input exactly), that of a Dense layer a MatMul with the transposed weight.
"""
from __future__ import annotations

import numpy as np

from explainer.frontend.ir import CNode
from explainer.lrp.rules import Epsilon, LinearRule, Norm, Rule
from explainer.relevance.emitters.base import EmitContext, unsupported_rule
from explainer.relevance.linear_rule import apply_linear_rule


class LinearEmitter:
    """Shared backward for linear layers; subclasses say how to apply the layer and its transpose."""

    kind: str | None = None

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None) -> str:
        raise NotImplementedError

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray) -> str:
        """The transposed product Wᵀ g for the (possibly modified) weight ``w`` stored under ``w_key``."""
        raise NotImplementedError

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        w = ctx.weight(node, "W", node.params["W"])
        b = ctx.weight(node, "B", node.params["B"])
        self.apply(ctx, node, node.inputs[0], w, b, out=node.output)

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        if isinstance(rule, Norm):
            rule = Epsilon(rule.stabiliser)
        if not isinstance(rule, LinearRule):
            raise unsupported_rule(node, rule)
        return [apply_linear_rule(ctx, self, node, rule, r)]


class ConvEmitter(LinearEmitter):
    kind = "conv"

    def _attrs(self, node: CNode) -> dict:
        return {"strides": node.attrs["strides"], "pads": node.attrs["pads"], "dilations": node.attrs["dilations"],
                "group": node.attrs["group"], "kernel_shape": node.attrs["kernel_shape"]}

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str:
        inputs = [x, w] + ([b] if b is not None else [])
        return ctx.b.op("Conv", inputs, f"{node.name}_conv", out_names=[out] if out else None, **self._attrs(node))

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray) -> str:
        attrs = self._attrs(node)
        in_spatial = ctx.shape(node.inputs[0])[2:]
        out_spatial = ctx.shape(node.output)[2:]
        n = len(in_spatial)
        pads = attrs["pads"]
        reach = [d * (k - 1) for d, k in zip(attrs["dilations"], attrs["kernel_shape"])]
        if all(s == 1 for s in attrs["strides"]) and all(pads[i] <= reach[i] and pads[i + n] <= reach[i]
                                                         for i in range(n)):
            return self._transpose_as_conv(ctx, node, g, w_key, w, attrs, reach)
        output_padding = []
        for i in range(n):
            k, s, d = attrs["kernel_shape"][i], attrs["strides"][i], attrs["dilations"][i]
            natural = (out_spatial[i] - 1) * s - pads[i] - pads[i + n] + d * (k - 1) + 1
            output_padding.append(in_spatial[i] - natural)
        return ctx.b.op("ConvTranspose", [g, ctx.weight(node, w_key, w)], f"{node.name}_convT",
                        output_padding=output_padding if any(output_padding) else None, **attrs)

    def _transpose_as_conv(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray, attrs: dict,
                           reach: list[int]) -> str:
        """For stride 1 the transposed convolution is a convolution with the kernel flipped and its in/out channels
        swapped within each group, padded by d·(k−1) − p; ONNX Runtime runs Conv far faster than ConvTranspose."""
        group, n = attrs["group"], len(reach)
        out_c, in_per_group = w.shape[0], w.shape[1]
        grouped = w.reshape(group, out_c // group, in_per_group, *w.shape[2:])
        swapped = np.swapaxes(grouped, 1, 2).reshape(group * in_per_group, out_c // group, *w.shape[2:])
        flipped = np.ascontiguousarray(np.flip(swapped, axis=tuple(range(2, 2 + n))))
        pads = attrs["pads"]
        new_pads = [reach[i] - pads[i] for i in range(n)] + [reach[i] - pads[i + n] for i in range(n)]
        return ctx.b.op("Conv", [g, ctx.weight(node, w_key + "_flipT", flipped)], f"{node.name}_convT",
                        pads=new_pads, dilations=attrs["dilations"], group=group, kernel_shape=attrs["kernel_shape"])


class DenseEmitter(LinearEmitter):
    kind = "dense"

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str:
        if b is None:
            return ctx.b.op("MatMul", [x, w], f"{node.name}_mm", out_names=[out] if out else None)
        return ctx.b.op("Gemm", [x, w, b], f"{node.name}_gemm", out_names=[out] if out else None)

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray) -> str:
        return ctx.b.op("Gemm", [g, ctx.weight(node, w_key, w)], f"{node.name}_mmT", transB=1)


__all__ = ["ConvEmitter", "DenseEmitter", "LinearEmitter", "apply_linear_rule"]
