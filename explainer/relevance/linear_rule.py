"""How a ``LinearRule`` (``lrp/rules.py``) becomes ONNX nodes for any linear layer: per term group, forward passes
with modified inputs and parameters, one stabilised denominator, transposed products, and the weighted sum. The layer
itself (Conv, Dense) says how to apply it and its transpose (``LinearOp.apply`` / ``LinearOp.transpose``)."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from explainer.errors import ModelError
from explainer.frontend.ir import CNode
from explainer.lrp.rules import LinearRule, Term
from explainer.relevance.emitters.base import EmitContext


class LinearOp(Protocol):
    """A linear layer: its forward product with given (possibly modified) parameters, and its transpose."""

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str: ...

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray) -> str: ...


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


def apply_linear_rule(ctx: EmitContext, op: LinearOp, node: CNode, rule: LinearRule, r: str) -> str:
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
