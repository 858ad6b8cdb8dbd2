"""Conv and Dense (Gemm/MatMul) forward and backward, and the generic application of a LinearRule to them.

Every LRP rule here is "forward with modified parameters, divide, one transposed product, multiply": the transposed
product of a Conv is a ConvTranspose with the same weights, strides, pads, dilations and group (output_padding makes
the shape match the layer's input exactly), that of a Dense layer a MatMul with the transposed weight.
"""
from __future__ import annotations

import numpy as np

from ..ir import CNode
from ..errors import ModelError
from ..rules import Epsilon, LinearRule, Norm, Rule, Term
from .base import EmitContext, unsupported_rule


class LinearEmitter:
    """Shared backward for linear layers; subclasses say how to apply the layer and its transpose."""

    kind: str | None = None

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None) -> str:
        raise NotImplementedError

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w: str) -> str:
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
            w_mod = term.weight(w_np)
            w_name = ctx.weight(node, f"W_{term.weight.__name__}", w_mod)
            terms.append((term, a, w_name))
        if not terms:
            continue
        g = r
        if rule.normalise:
            zs = []
            for term, a, w_name in terms:
                plain = term.input == "x" and term.weight.__name__ == "_identity" and term.bias is not None \
                    and term.bias.__name__ == "_identity"
                if plain:
                    z = node.output
                else:
                    bias = None if term.bias is None else ctx.weight(node, f"B_{term.bias.__name__}", term.bias(b_np))
                    z = op.apply(ctx, node, a, w_name, bias)
                zs.append(z if term.sign > 0 else b.op("Neg", [z], "zneg"))
            den = b.stabilise(b.sum(zs, f"{node.name}_z{gi}"), rule.stabiliser, f"{node.name}_den{gi}")
            g = b.div(r, den, f"{node.name}_s{gi}")
        if group.gate is not None:
            cmp = "Greater" if group.gate == "pos" else "Less"
            mask = b.cast_float(b.op(cmp, [node.output, b.const(0.0)], "gate"))
            g = b.mul(g, mask, f"{node.name}_gated{gi}")
        parts = []
        for term, a, w_name in terms:
            back = op.transpose(ctx, node, g, w_name)
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

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w: str) -> str:
        attrs = self._attrs(node)
        in_spatial = ctx.shape(node.inputs[0])[2:]
        out_spatial = ctx.shape(node.output)[2:]
        n = len(in_spatial)
        pads = attrs["pads"]
        output_padding = []
        for i in range(n):
            k, s, d = attrs["kernel_shape"][i], attrs["strides"][i], attrs["dilations"][i]
            natural = (out_spatial[i] - 1) * s - pads[i] - pads[i + n] + d * (k - 1) + 1
            output_padding.append(in_spatial[i] - natural)
        return ctx.b.op("ConvTranspose", [g, w], f"{node.name}_convT",
                        output_padding=output_padding if any(output_padding) else None, **attrs)


class DenseEmitter(LinearEmitter):
    kind = "dense"

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str:
        if b is None:
            return ctx.b.op("MatMul", [x, w], f"{node.name}_mm", out_names=[out] if out else None)
        return ctx.b.op("Gemm", [x, w, b], f"{node.name}_gemm", out_names=[out] if out else None)

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w: str) -> str:
        return ctx.b.op("Gemm", [g, w], f"{node.name}_mmT", transB=1)


__all__ = ["ConvEmitter", "DenseEmitter", "LinearEmitter", "apply_linear_rule"]
