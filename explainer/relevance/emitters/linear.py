"""Conv and Dense (Gemm/MatMul) forward and backward, and the generic application of a LinearRule to them.

Every LRP rule here is "forward with modified parameters, divide, one transposed product, multiply": the transposed
product of a Conv is a ConvTranspose with the same weights, strides, pads, dilations and group (output_padding makes
the shape match the layer's input exactly), that of a Dense layer a MatMul with the transposed weight.
"""
from __future__ import annotations

import numpy as np

from explainer.errors import ModelError
from explainer.frontend.ir import CNode
from explainer.lrp.rules import Epsilon, LinearRule, Norm, Rule, Term
from explainer.relevance.emitters.base import EmitContext, unsupported_rule


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


def _term_input(ctx: EmitContext, node: CNode, term: Term) -> str | None:
    """The modified input a'_t of a term, or None when it is identically zero (negative part of a ReLU output)."""
    x = node.inputs[0]
    b = ctx.b
    if term.input == "x":
        return x
    if term.input == "pos":
        return x if x in ctx.nonneg else b.relu(x, f"{node.name}_xpos")
    if term.input == "neg":
        return None if x in ctx.nonneg else b.neg_part(x, f"{node.name}_xneg")
    per_sample = (1,) + tuple(ctx.shape(x)[1:])
    if term.input == "ones":
        return ctx.weight(node, "ones", np.ones(per_sample, np.float32))
    if term.input in ("low", "high"):
        if x not in ctx.bounds:
            raise ModelError(f"the zB rule needs input bounds at '{x}' (input of '{node.name}'), but they cannot be "
                             "carried there from the model input")
        lo, hi = ctx.bounds[x]
        return ctx.weight(node, term.input, lo if term.input == "low" else hi)
    raise ValueError(f"unknown term input '{term.input}'")


def apply_linear_rule(ctx: EmitContext, op: LinearEmitter, node: CNode, rule: LinearRule, r: str) -> str:
    """R_in for one linear layer under ``rule`` (see ``rules.py`` for the formula)."""
    b = ctx.b
    w_np, b_np = node.params["W"], node.params["B"]
    contributions: list[str] = []
    for gi, group in enumerate(rule.groups):
        terms = []
        for term in group.terms:
            a = _term_input(ctx, node, term)
            if a is None:
                continue
            w_key = f"W_{term.weight.__name__}"
            terms.append((term, a, w_key, term.weight(w_np)))
        if not terms:
            continue
        g = r
        if rule.normalise:
            zs = []
            for term, a, w_key, w_mod in terms:
                plain = term.input == "x" and term.weight.__name__ == "_identity" and term.bias is not None \
                    and term.bias.__name__ == "_identity"
                if plain:
                    z = node.output
                else:
                    bias = None if term.bias is None else ctx.weight(node, f"B_{term.bias.__name__}", term.bias(b_np))
                    z = op.apply(ctx, node, a, ctx.weight(node, w_key, w_mod), bias)
                zs.append(z if term.sign > 0 else b.op("Neg", [z], "zneg"))
            den = b.stabilise(b.sum(zs, f"{node.name}_z{gi}"), rule.stabiliser, f"{node.name}_den{gi}")
            g = b.div(r, den, f"{node.name}_s{gi}")
        if group.gate is not None:
            cmp = "Greater" if group.gate == "pos" else "Less"
            mask = b.cast_float(b.op(cmp, [node.output, b.const(0.0)], "gate"))
            g = b.mul(g, mask, f"{node.name}_gated{gi}")
        parts = []
        for term, a, w_key, w_mod in terms:
            back = op.transpose(ctx, node, g, w_key, w_mod)
            part = b.mul(a, back, f"{node.name}_c") if rule.multiply_input else back
            parts.append(part if term.sign > 0 else b.op("Neg", [part], "cneg"))
        total = b.sum(parts, f"{node.name}_r{gi}")
        if group.coefficient != 1.0:
            total = b.mul(total, b.const(float(group.coefficient)), f"{node.name}_coef{gi}")
        contributions.append(total)
    if not contributions:
        return b.op("Mul", [node.inputs[0], b.const(0.0)], f"{node.name}_rzero")
    return b.sum(contributions, f"{node.name}_rin")


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
